// Reads a JSON request body with the contract's errors: 415 for another media type, 400 for bad JSON.
import type { Context } from "hono";
import { ApiError } from "./errors";

export async function readJsonBody(c: Context): Promise<unknown> {
  const type = c.req.header("Content-Type") ?? "";
  if (!/^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i.test(type)) {
    throw new ApiError("unsupported_media_type", "send the body as JSON with Content-Type: application/json");
  }
  const text = await c.req.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError("invalid_json", "the request body is not valid JSON");
  }
}
