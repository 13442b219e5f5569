// Reads a JSON request body with the contract's errors: 415 for another media type, 400 for bad JSON, 422
// for JSON nested deeper than any request needs (measured before parsing, so nothing recursive sees it).
import type { Context } from "hono";
import { ApiError } from "./errors";

export async function readJsonBody(c: Context): Promise<unknown> {
  const type = c.req.header("Content-Type") ?? "";
  if (!/^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i.test(type)) {
    throw new ApiError("unsupported_media_type", "send the body as JSON with Content-Type: application/json");
  }
  const text = await c.req.text();
  if (jsonDepth(text) > MAX_JSON_DEPTH) {
    throw new ApiError("validation_error", `the JSON is nested more than ${MAX_JSON_DEPTH} levels deep`, [{ path: "(body)", message: `at most ${MAX_JSON_DEPTH} levels of arrays and objects` }]);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError("invalid_json", "the request body is not valid JSON");
  }
}

/** No request nests deeper than a template's variables may (a few levels); this leaves room and no more. */
export const MAX_JSON_DEPTH = 32;

/** How deeply arrays and objects nest in JSON text: one pass, brackets inside strings not counted. */
export function jsonDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text.charCodeAt(i);
    if (inString) {
      if (char === 0x5c) i++; // a backslash: skip what it escapes
      else if (char === 0x22) inString = false;
    } else if (char === 0x22) inString = true;
    else if (char === 0x5b || char === 0x7b) deepest = Math.max(deepest, ++depth);
    else if (char === 0x5d || char === 0x7d) depth--;
  }
  return deepest;
}
