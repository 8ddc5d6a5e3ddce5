// The live server the tests run against: make test starts one and sets these (tests/client/test_typescript.py).
export const URL = process.env.MEMCLOUD_URL;
export const KEY = process.env.MEMCLOUD_API_KEY;
export const LIMITED_URL = process.env.MEMCLOUD_LIMITED_URL;
export const LIMITED_KEY = process.env.MEMCLOUD_LIMITED_API_KEY; // a tenant with rate_limit 2
export const DIM = Number(process.env.MEMCLOUD_DIM ?? 8);

if (!URL || !KEY) {
  throw new Error("MEMCLOUD_URL and MEMCLOUD_API_KEY must name a live server and a key of a fresh tenant " +
    "(`make test` starts one and runs these tests)");
}

/** A deterministic non-zero vector. */
export function vec(seed) {
  let x = seed * 9301 + 49297;
  return Array.from({ length: DIM }, () => {
    x = (x * 9301 + 49297) % 233280;
    return x / 233280 - 0.5 + 0.01;
  });
}
