// The Hono environment shared by every route and middleware: bindings plus typed per-request variables.
import type { Logger } from "../log";

export interface AppEnv {
  Bindings: Env;
  Variables: {
    log: Logger;
    /** Name of the API key that authenticated the request. */
    apiKeyName: string;
  };
}
