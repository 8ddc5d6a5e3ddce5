// The README's example; `npm run build` type-checks it against the generated types.
import { MemcloudClient, NotFound, RateLimited, type QueryHit } from "@memcloud/client";

// MEMCLOUD_URL and MEMCLOUD_API_KEY are the defaults; options override them.
const memory = new MemcloudClient({ maxRetries: 5 });

export async function remember(taskId: string, embedding: Float32Array, reward: number): Promise<string> {
  return memory.store({ task_id: taskId, state_embedding: embedding, reward, tags: ["demo"] });
}

export async function recall(embedding: number[]): Promise<QueryHit[]> {
  try {
    return await memory.query(embedding, { topK: 3, min_reward: 0.5, tags_any: ["demo"] });
  } catch (error) {
    if (error instanceof RateLimited) console.warn(`still limited after retries; retry in ${error.retryAfter} s`);
    throw error;
  }
}

export async function forget(id: string): Promise<void> {
  try {
    await memory.delete(id);
  } catch (error) {
    if (!(error instanceof NotFound)) throw error; // already gone
  }
}

export async function importAll(episodes: { task: string; embedding: number[]; reward: number }[]): Promise<string[]> {
  // Chunks of 500 per request; ids are generated here, so running it again stores nothing twice.
  return memory.storeBatch(episodes.map((e) => ({ task_id: e.task, state_embedding: e.embedding, reward: e.reward })), { batchSize: 500 });
}
