// The typed client: paths, parameters, bodies and every declared response come from src/schema.d.ts,
// which `npm run generate` writes from the service's /openapi.json.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type ApiError = Schemas["ErrorBody"];

export function docground(baseUrl: string, apiKey?: string) {
  // JSON responses only (streams are read with fetch + EventSource-style parsing, not typed bodies).
  return createClient<paths, "application/json">({
    baseUrl,
    headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {},
  });
}
