// Typed errors, one per kind of answer the server gives (its body is always {"error": "..."}).

export class MemcloudError extends Error {
  /** The HTTP status, or undefined when no answer came. */
  readonly status: number | undefined;
  readonly headers: Record<string, string>;
  /** Ids stored before a chunked batch store failed (only on errors from storeBatch). */
  storedIds?: string[];

  constructor(message: string, status?: number, headers: Record<string, string> = {}) {
    super(status === undefined ? message : `${status}: ${message}`);
    this.name = new.target.name;
    this.status = status;
    this.headers = headers;
  }
}

/** The server could not be reached, or the connection broke before an answer came. */
export class APIConnectionError extends MemcloudError {}
/** No answer within the client's timeout. */
export class APITimeoutError extends APIConnectionError {}
/** 400: the request was refused; the message names the field. */
export class ValidationError extends MemcloudError {}
/** 401: missing, unknown, revoked or expired API key. */
export class AuthenticationError extends MemcloudError {}
/** 403: the key's scope does not allow the call, or the tenant is inactive. */
export class PermissionDenied extends MemcloudError {}
/** 403: the call would exceed a quota of the tenant (max_episodes); nothing was stored. */
export class QuotaExceeded extends PermissionDenied {}
/** 404: no such episode or snapshot for this tenant. */
export class NotFound extends MemcloudError {}
/** 409: an episode with this id exists with different content. */
export class Conflict extends MemcloudError {}
/** 413: the request body is over the server's limit. */
export class PayloadTooLarge extends MemcloudError {}
/** 429: the tenant's request budget for this window is spent; `retryAfter` in whole seconds. */
export class RateLimited extends MemcloudError {
  readonly retryAfter: number | undefined;

  constructor(message: string, status?: number, headers: Record<string, string> = {}) {
    super(message, status, headers);
    const raw = Number(headers["retry-after"]);
    this.retryAfter = headers["retry-after"] !== undefined && Number.isFinite(raw) ? Math.max(0, Math.floor(raw)) : undefined;
  }
}
/** 503: the server or its database cannot answer right now. */
export class ServiceUnavailable extends MemcloudError {}
/** Any other 5xx. */
export class ServerError extends MemcloudError {}

const BY_STATUS: Record<number, typeof MemcloudError> = {
  400: ValidationError,
  401: AuthenticationError,
  403: PermissionDenied,
  404: NotFound,
  409: Conflict,
  413: PayloadTooLarge,
  429: RateLimited,
  503: ServiceUnavailable,
};

/** The error for an answer with status >= 400. */
export function errorFor(status: number, message: string, headers: Record<string, string>): MemcloudError {
  let cls = BY_STATUS[status] ?? (status >= 500 ? ServerError : MemcloudError);
  // A quota refusal names the limit it hit; a scope refusal names the scope it needs.
  if (cls === PermissionDenied && /max_episodes|quota/i.test(message)) cls = QuotaExceeded;
  return new cls(message, status, headers);
}
