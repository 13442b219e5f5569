// Bearer API keys. Keys are configured as SHA-256 digests (API_KEYS = "name:hex,..."); the presented
// key is hashed and compared to every configured digest in constant time, so neither the keys nor the
// timing of a comparison reveal anything. Only the Authorization header counts (never the query string),
// and a missing, malformed or wrong key gets the same 401, with WWW-Authenticate (RFC 6750 §3).
import { createMiddleware } from "hono/factory";
import { getConfig, type ApiKeyEntry } from "../../config";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";

export async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** The key whose digest matches, or undefined. Compares against all keys, always. */
export async function findApiKey(keys: ApiKeyEntry[], presented: string): Promise<ApiKeyEntry | undefined> {
  const digest = await sha256(presented);
  let match: ApiKeyEntry | undefined;
  for (const key of keys) {
    if (crypto.subtle.timingSafeEqual(digest, key.digest) && match === undefined) match = key;
  }
  return match;
}

/** RFC 6750 §2.1: "Bearer" (any letter case), one or more spaces, then the token's characters. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

export function apiKeyAuth() {
  return createMiddleware<AppEnv>(async (c, next) => {
    const presented = BEARER.exec(c.req.header("Authorization") ?? "")?.[1];
    const key = presented === undefined ? undefined : await findApiKey(getConfig(c.env).apiKeys, presented);
    if (!key) {
      throw new ApiError("unauthorized", "a valid API key is required: Authorization: Bearer <key>", undefined, { "WWW-Authenticate": "Bearer" });
    }
    c.set("apiKey", key);
    await next();
  });
}
