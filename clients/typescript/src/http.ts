// Transport: one request description, a retry policy, and fetch (Node 20+ and browsers).
import { APIConnectionError, APITimeoutError, MemcloudError, RateLimited, ValidationError, errorFor } from "./errors.js";

export const DEFAULT_URL = "http://127.0.0.1:8080";

export interface Call {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  path: string;
  body?: unknown;
  params?: Record<string, string>;
  /** May be sent again once the server may have seen it: reads, stores with ids, PUT. */
  replayable?: boolean;
  retry?: boolean;
}

export interface TransportOptions {
  baseUrl?: string;
  apiKey?: string;
  timeoutMs?: number;
  maxRetries?: number;
  /** A longer Retry-After is handed to the caller as RateLimited instead of waited. */
  maxRetryAfterSec?: number;
  fetch?: typeof fetch;
}

function env(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.[name];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Transport {
  readonly baseUrl: string;
  readonly apiKey: string | undefined;
  readonly timeoutMs: number;
  readonly maxRetries: number;
  readonly maxRetryAfterSec: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: TransportOptions = {}) {
    this.baseUrl = (options.baseUrl ?? env("MEMCLOUD_URL") ?? DEFAULT_URL).replace(/\/+$/, "");
    this.apiKey = options.apiKey ?? env("MEMCLOUD_API_KEY");
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxRetries = options.maxRetries ?? 3;
    this.maxRetryAfterSec = options.maxRetryAfterSec ?? 60;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** Send `call`, retrying as the policy allows; the decoded 2xx answer, or a MemcloudError. */
  async send<T>(call: Call): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return (await this.once(call)) as T;
      } catch (error) {
        const wait = this.delay(attempt, error as MemcloudError, call);
        if (wait === undefined) throw error;
        await sleep(wait);
      }
    }
  }

  /** Milliseconds to wait before the next attempt, or undefined to give up. */
  private delay(attempt: number, error: MemcloudError, call: Call): number | undefined {
    if (attempt >= this.maxRetries || call.retry === false) return undefined;
    if (error instanceof RateLimited) {
      if (error.retryAfter === undefined) return backoff(attempt);
      if (error.retryAfter > this.maxRetryAfterSec) return undefined;
      return error.retryAfter * 1000 + Math.random() * 250; // spread clients over the new window
    }
    if (error.status === 503) return backoff(attempt);
    if (error instanceof APIConnectionError && call.replayable !== false) return backoff(attempt);
    return undefined;
  }

  private async once(call: Call): Promise<unknown> {
    const url = new URL(this.baseUrl + call.path);
    for (const [key, value] of Object.entries(call.params ?? {})) url.searchParams.set(key, value);
    const headers: Record<string, string> = { Accept: "application/json" };
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`;
    let body: string | undefined;
    if (call.body !== undefined) {
      body = JSON.stringify(call.body, (_key, value) => {
        if (typeof value === "number" && !Number.isFinite(value)) {
          throw new ValidationError("request holds a non-finite number (NaN or Infinity)");
        }
        return value;
      });
      headers["Content-Type"] = "application/json";
    }
    let response: Response;
    try {
      response = await this.fetchImpl(url, { method: call.method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      const name = (error as Error).name;
      if (name === "TimeoutError" || name === "AbortError") throw new APITimeoutError(`no answer within ${this.timeoutMs} ms`);
      throw new APIConnectionError(`${name}: ${(error as Error).message}`);
    }
    const text = await response.text();
    const json = (response.headers.get("content-type") ?? "").startsWith("application/json");
    let data: unknown = text;
    if (json && text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    if (response.status >= 400) {
      const message = typeof data === "object" && data !== null && "error" in data
        ? String((data as { error: unknown }).error)
        : (text.slice(0, 500) || response.statusText);
      const seen: Record<string, string> = {};
      response.headers.forEach((value, key) => { seen[key.toLowerCase()] = value; });
      throw errorFor(response.status, message, seen);
    }
    return data;
  }
}

function backoff(attempt: number): number {
  const cap = Math.min(8000, 500 * 2 ** attempt);
  return cap / 2 + Math.random() * (cap / 2);
}
