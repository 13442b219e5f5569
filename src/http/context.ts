// The Hono environment shared by every route and middleware: bindings plus typed per-request variables.
import type { ApiKeyEntry } from "../config";
import type { Logger } from "../log";

export interface AppEnv {
  Bindings: Env;
  Variables: {
    log: Logger;
    /** The API key that authenticated the request. */
    apiKey: ApiKeyEntry;
    /** The request's deferred work (see defer). */
    deferred: Promise<unknown>[];
  };
}
