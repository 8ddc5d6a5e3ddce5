// @memcloud/client: a thin, typed client over fetch for Memcloud (Node 20+ and browsers).
// The types come from the server's OpenAPI schema (src/schema.ts, `npm run gen`).
import type { components } from "./schema.js";
import { MemcloudError, ValidationError } from "./errors.js";
import { Transport, type TransportOptions } from "./http.js";

export * from "./errors.js";
export type { components, paths, operations } from "./schema.js";
export { DEFAULT_URL } from "./http.js";

type Schemas = components["schemas"];
/** An embedding: any array-like of numbers (number[], Float32Array, ...). */
export type Vector = ArrayLike<number>;
export type Episode = Schemas["EpisodeOutput"];
export type QueryHit = Schemas["QueryHitOutput"];
export type Stats = Schemas["StatsResponse"];
export type Page = Schemas["EpisodeListResponse"];
export type Changes = Schemas["PatchedEpisodePatchInputRequest"];
/** An episode to store; `id` is generated on this side when absent, so a retry never stores twice. */
/** An episode to store; `state_embedding` may be left out when `text` is given to a tenant with an embedder. */
export type EpisodeInput = Omit<Schemas["EpisodeInputRequest"], "state_embedding"> & { state_embedding?: Vector };
/** Filters shared by query, list and delete-by-filter; they combine with AND. */
export type Filters = Omit<Schemas["QueryInputRequest"], "query_embedding" | "top_k" | "include_embedding" | "embedding_format">;

export const DEFAULT_BATCH_SIZE = 1000; // the server's AGENT_MEM_MAX_BATCH default

export interface ClientOptions extends TransportOptions {
  /** Episodes per request of storeBatch (default 1000). */
  batchSize?: number;
}

function vector(values: Vector, name: string): number[] {
  const out = Array.from(values, Number);
  if (!out.every(Number.isFinite)) throw new ValidationError(`${name}: every value must be a finite number`);
  return out;
}

function withVector<T extends { state_embedding?: Vector }>(episode: T): Omit<T, "state_embedding"> & { state_embedding?: number[] | string } {
  const { state_embedding, ...rest } = episode;
  return state_embedding === undefined ? rest : { ...rest, state_embedding: vector(state_embedding, "state_embedding") };
}

function episodeBody(episode: EpisodeInput): Schemas["EpisodeInputRequest"] {
  return { ...withVector(episode), id: episode.id ?? crypto.randomUUID() };
}

function filterParams(filters: Filters): Record<string, string> {
  const params: Record<string, string> = {};
  for (const [key, value] of Object.entries(filters)) {
    if (value === undefined || value === null) continue;
    params[key] = Array.isArray(value) ? value.join(",") : String(value);
  }
  return params;
}

/**
 * Talks to a Memcloud server. `baseUrl` and `apiKey` default to MEMCLOUD_URL and MEMCLOUD_API_KEY
 * (where a `process.env` exists). Failed calls reject with a subclass of MemcloudError. 429, 503 and
 * connection errors are retried up to `maxRetries` times (429 waits Retry-After).
 */
export class MemcloudClient {
  readonly baseUrl: string;
  readonly batchSize: number;
  private readonly http: Transport;

  constructor(options: ClientOptions = {}) {
    this.http = new Transport(options);
    this.baseUrl = this.http.baseUrl;
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  }

  /** Store one episode; resolves to its id. */
  async store(episode: EpisodeInput): Promise<string> {
    const answer = await this.http.send<Schemas["EpisodeIdResponse"]>({ method: "POST", path: "/v1/episodes", body: episodeBody(episode) });
    return answer.id;
  }

  /**
   * Store many episodes in chunks of `batchSize`, ids in input order. Each chunk is all or nothing;
   * on an error, `error.storedIds` holds the ids of the chunks stored before it (storing the same
   * episodes again, ids included, is safe).
   */
  async storeBatch(episodes: Iterable<EpisodeInput>, options: { batchSize?: number } = {}): Promise<string[]> {
    const size = options.batchSize ?? this.batchSize;
    if (size < 1) throw new RangeError("batchSize must be at least 1");
    const ids: string[] = [];
    let chunk: Schemas["EpisodeInputRequest"][] = [];
    const flush = async () => {
      const answer = await this.http.send<Schemas["EpisodeIdsResponse"]>({ method: "POST", path: "/v1/episodes/batch", body: { episodes: chunk } });
      ids.push(...answer.ids);
      chunk = [];
    };
    try {
      for (const episode of episodes) {
        chunk.push(episodeBody(episode));
        if (chunk.length === size) await flush();
      }
      if (chunk.length) await flush();
    } catch (error) {
      if (error instanceof MemcloudError) error.storedIds = ids;
      throw error;
    }
    return ids;
  }

  /** Create or replace the whole episode `id` in one step; resolves to true if it was created. */
  async put(id: string, episode: Omit<EpisodeInput, "id">): Promise<boolean> {
    const body = withVector(episode);
    const answer = await this.http.send<Schemas["EpisodePutResponse"]>({ method: "PUT", path: `/v1/episodes/${encodeURIComponent(id)}`, body });
    return answer.created;
  }

  async get(id: string): Promise<Episode> {
    return this.http.send<Episode>({ method: "GET", path: `/v1/episodes/${encodeURIComponent(id)}` });
  }

  /** Change some fields (the embedding never changes); resolves to the episode as it is now. */
  async patch(id: string, changes: Changes): Promise<Episode> {
    return this.http.send<Episode>({ method: "PATCH", path: `/v1/episodes/${encodeURIComponent(id)}`, body: changes });
  }

  async delete(id: string): Promise<number> {
    const answer = await this.http.send<Schemas["RemovedResponse"]>({ method: "DELETE", path: `/v1/episodes/${encodeURIComponent(id)}`, replayable: false });
    return answer.removed;
  }

  /** Delete by ids, or every episode matching the filter (the server refuses an empty filter). */
  async deleteMany(target: { ids: string[] } | { filter: Filters }): Promise<number> {
    const answer = await this.http.send<Schemas["RemovedResponse"]>({ method: "POST", path: "/v1/episodes/delete", body: target, replayable: false });
    return answer.removed;
  }

  /** The `topK` most similar episodes that pass every filter, best first. */
  async query(embedding: Vector, options: Filters & { topK?: number; includeEmbedding?: boolean } = {}): Promise<QueryHit[]> {
    const { topK = 5, includeEmbedding = false, ...filters } = options;
    const body: Schemas["QueryInputRequest"] = { ...filters, query_embedding: vector(embedding, "query_embedding"), top_k: topK, include_embedding: includeEmbedding };
    return (await this.http.send<Schemas["QueryResponse"]>({ method: "POST", path: "/v1/query", body })).episodes;
  }

  /** One page, newest first; pass `page.next_cursor` back as `cursor` for the next one. */
  async listEpisodes(options: Filters & { limit?: number; cursor?: string; includeEmbedding?: boolean } = {}): Promise<Page> {
    const { limit = 100, cursor, includeEmbedding = false, ...filters } = options;
    const params = { ...filterParams(filters), limit: String(limit), ...(cursor ? { cursor } : {}), ...(includeEmbedding ? { include_embedding: "true" } : {}) };
    return this.http.send<Page>({ method: "GET", path: "/v1/episodes", params });
  }

  /** Every matching episode, newest first, fetching pages as needed. */
  async *iterEpisodes(options: Filters & { pageSize?: number; includeEmbedding?: boolean } = {}): AsyncGenerator<Episode> {
    const { pageSize = 100, ...rest } = options;
    let cursor: string | undefined;
    do {
      const page = await this.listEpisodes({ ...rest, limit: pageSize, cursor });
      yield* page.episodes;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  async pruneOlderThan(cutoffMs: number): Promise<number> {
    return this.prune("older-than", { timestamp_cutoff_ms: cutoffMs });
  }

  async pruneKeepNewest(n: number): Promise<number> {
    return this.prune("keep-newest", { n });
  }

  async pruneKeepHighestReward(n: number): Promise<number> {
    return this.prune("keep-highest-reward", { n });
  }

  private async prune(kind: string, body: Record<string, number>): Promise<number> {
    return (await this.http.send<Schemas["RemovedResponse"]>({ method: "POST", path: `/v1/prune/${kind}`, body, replayable: false })).removed;
  }

  async stats(): Promise<Stats> {
    return this.http.send<Stats>({ method: "GET", path: "/v1/stats" });
  }

  async health(): Promise<boolean> {
    await this.http.send({ method: "GET", path: "/health" });
    return true;
  }

  /** True when the server and its database answer; false on 503 (not retried: it is the answer). */
  async ready(): Promise<boolean> {
    try {
      await this.http.send({ method: "GET", path: "/ready", retry: false });
      return true;
    } catch (error) {
      if (error instanceof MemcloudError && error.status === 503) return false;
      throw error;
    }
  }
}
