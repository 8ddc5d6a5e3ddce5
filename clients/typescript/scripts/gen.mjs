// Regenerates src/schema.ts, the types of the Memcloud API, from the server's OpenAPI schema.
//
//   npm run gen                         fetch $MEMCLOUD_URL/v1/openapi.json (default http://127.0.0.1:8080)
//   npm run gen -- path/openapi.json    read a file (`python manage.py spectacular --format openapi-json`)
//
// `generate` is what the drift test runs on the served schema: the same function, the same text.
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";

export const SCHEMA_FILE = fileURLToPath(new URL("../src/schema.ts", import.meta.url));
const HEADER = "// Generated from the Memcloud server's /v1/openapi.json by `npm run gen`: do not edit.\n\n";

/** The text of src/schema.ts for an OpenAPI document (a parsed object). */
export async function generate(schema) {
  // A field with a default may be left out of a request: optional, not required, in the types.
  const ast = await openapiTS(structuredClone(schema), { alphabetize: false, defaultNonNullable: false });
  return HEADER + astToString(ast);
}

/** The served schema of the server at `baseUrl`. */
export async function fetchSchema(baseUrl) {
  const response = await fetch(`${baseUrl.replace(/\/+$/, "")}/v1/openapi.json`);
  if (!response.ok) throw new Error(`GET /v1/openapi.json answered ${response.status}`);
  return response.json();
}

async function main() {
  const source = process.argv[2];
  const schema = source
    ? JSON.parse(await readFile(source, "utf8"))
    : await fetchSchema(process.env.MEMCLOUD_URL ?? "http://127.0.0.1:8080");
  await writeFile(SCHEMA_FILE, await generate(schema));
  console.log(`wrote ${SCHEMA_FILE}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await main();
}
