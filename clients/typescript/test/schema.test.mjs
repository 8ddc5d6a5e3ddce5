// The committed types must be what the served schema generates; a field added to the served schema
// must make that comparison fail (the second test), so the first one can fail.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";

import { SCHEMA_FILE, fetchSchema, generate } from "../scripts/gen.mjs";
import { URL } from "./env.mjs";

const served = await fetchSchema(URL);
const committed = await readFile(SCHEMA_FILE, "utf8");

test("src/schema.ts is generated from the served /v1/openapi.json (run `npm run gen` after an API change)", async () => {
  assert.equal(await generate(served), committed);
});

test("a field added to the served schema changes the generated types", async () => {
  const changed = structuredClone(served);
  changed.components.schemas.EpisodeOutput.properties.drift_probe = { type: "string" };
  const text = await generate(changed);
  assert.notEqual(text, committed);
  assert.match(text, /drift_probe\?: string;/);
});
