// createApp(): the one Hono app used by production and tests alike, so middleware and error handling
// are identical everywhere. Errors leave in the contract's shape; unknown ones become a logged 500.
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { requestId } from "hono/request-id";
import { secureHeaders } from "hono/secure-headers";
import { ConfigError, getConfig } from "./config";
import type { AppEnv } from "./http/context";
import { ApiError, ERROR_STATUS, toErrorResponse, type ErrorCode } from "./http/errors";
import { apiKeyAuth } from "./http/middleware/api-key-auth";
import { requestLog } from "./http/middleware/request-log";
import { classicRoutes } from "./http/routes/classic";
import { emailRoutes } from "./http/routes/emails";
import { previewRoutes } from "./http/routes/preview";
import { templateRoutes } from "./http/routes/templates";
import { suppressionRoutes } from "./http/routes/suppressions";
import { webhookRoutes } from "./http/routes/webhooks";
import { createLogger } from "./log";
import type * as z from "zod";
import type { healthSchema } from "./http/responses";
import { DOCS_PAGE } from "./http/docs-page";
import { openApiDocument } from "./http/openapi";

/** Largest request body accepted, in bytes: room for 5 MiB of attachments in base64 and both bodies. */
export const MAX_REQUEST_BYTES = 8 * 1024 * 1024;

const CODE_FOR_STATUS = new Map<number, ErrorCode>(Object.entries(ERROR_STATUS).map(([code, status]) => [status, code as ErrorCode]));

export function createApp() {
  const app = new Hono<AppEnv>();

  // The request id is always Mailroom's own (a client's X-Request-Id is logged beside it, see requestLog).
  app.use(requestId({ headerName: "" }), requestLog(), secureHeaders());
  app.get("/healthz", (c) => {
    try {
      getConfig(c.env);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      return c.json({ status: "misconfigured", settings: error.settings } satisfies z.output<typeof healthSchema>, 503);
    }
    return c.json({ status: "ok" } satisfies z.output<typeof healthSchema>);
  });
  app.get("/openapi.json", (c) => c.json(openApiDocument()));
  app.get("/docs", (c) => c.html(DOCS_PAGE));

  for (const path of ["/v1/*", "/send-notification"]) {
    // The key first: a caller without one gets its 401 before a byte of its body is read.
    app.use(
      path,
      apiKeyAuth(),
      bodyLimit({
        maxSize: MAX_REQUEST_BYTES,
        onError: () => {
          throw new ApiError("payload_too_large", `the request body is larger than ${MAX_REQUEST_BYTES} bytes`);
        },
      }),
    );
  }
  app.route("/v1/emails", emailRoutes);
  app.route("/v1/templates", templateRoutes);
  app.route("/v1/webhooks", webhookRoutes);
  app.route("/v1/suppressions", suppressionRoutes);
  app.route("/send-notification", classicRoutes);
  app.route("/preview", previewRoutes);

  app.notFound(() => toErrorResponse(new ApiError("not_found", "no such route")));
  app.onError((error, c) => {
    if (error instanceof ApiError) return toErrorResponse(error);
    if (error instanceof HTTPException) {
      const code = CODE_FOR_STATUS.get(error.status) ?? "internal_error";
      return toErrorResponse(new ApiError(code, error.message || code.replace(/_/g, " ")));
    }
    const log = c.var.log ?? createLogger({ request_id: c.var.requestId });
    const problem = error instanceof ConfigError ? "service is misconfigured" : "unhandled error";
    log.error(problem, { error, path: c.req.path });
    return toErrorResponse(new ApiError("internal_error", "internal error"));
  });

  return app;
}
