// Bearer API keys. Keys are configured as SHA-256 digests (API_KEYS = "name:hex,..."); the presented
// key is hashed and compared to every configured digest in constant time, so neither the keys nor the
// timing of a comparison reveal anything.
import { bearerAuth } from "hono/bearer-auth";
import type { Context } from "hono";
import { getConfig, type ApiKeyEntry } from "../../config";
import type { AppEnv } from "../context";
import { ApiError, toErrorResponse } from "../errors";

export async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** The name of the key whose digest matches, or undefined. Compares against all keys, always. */
export async function findApiKey(keys: ApiKeyEntry[], presented: string): Promise<string | undefined> {
  const digest = await sha256(presented);
  let match: string | undefined;
  for (const key of keys) {
    if (crypto.subtle.timingSafeEqual(digest, key.digest) && match === undefined) match = key.name;
  }
  return match;
}

const unauthorized = () => toErrorResponse(new ApiError("unauthorized", "a valid API key is required: Authorization: Bearer <key>"));

export function apiKeyAuth() {
  return bearerAuth({
    verifyToken: async (token: string, c: Context<AppEnv>) => {
      const name = await findApiKey(getConfig(c.env).apiKeys, token);
      if (name) c.set("apiKeyName", name);
      return name !== undefined;
    },
    noAuthenticationHeader: { message: unauthorized },
    invalidAuthenticationHeader: { message: unauthorized },
    invalidToken: { message: unauthorized },
  });
}
