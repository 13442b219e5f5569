// The one way a route sends: the Idempotency-Key header, the schedule, the key's sender domains, then
// the durable accept (D1 rows and the queue job, both or neither). POST /v1/emails and the classic
// POST /send-notification differ only in the request they validate and the answer they give.
import type { Context } from "hono";
import { acceptEmail, type Accepted } from "../accept";
import { getConfig } from "../config";
import { fingerprintBody, parseIdempotencyKey } from "../core/idempotency-key";
import { maySendFrom } from "../core/key-scope";
import { resolveSchedule } from "../core/schedule";
import { validate, type SendEmailRequest } from "../core/schema";
import { resolveEmail, type ResolvedEmail } from "../core/template-request";
import { templateCatalog } from "../templates/catalog";
import type * as z from "zod";
import { acceptOnce, type IdempotentAccept } from "../idempotency";
import type { AppEnv } from "./context";
import { ApiError } from "./errors";
import { readJsonBody } from "./json-body";

/**
 * Reads the JSON body, validates it with `schema` (a 422 says it is not a valid `what`), sends it, and
 * sets Location (and Idempotent-Replayed on a replay). The route gives the answer's body.
 */
export async function sendFromBody(c: Context<AppEnv>, schema: z.ZodType<SendEmailRequest>, what: string): Promise<Pick<Accepted, "id" | "status">> {
  const body = await readJsonBody(c);
  const validated = validate(schema, body);
  if (!validated.ok) throw new ApiError("validation_error", `the request is not a valid ${what}`, validated.issues);
  const resolved = resolveEmail(templateCatalog(), validated.value);
  if (!resolved.ok) throw new ApiError("validation_error", `the request is not a valid ${what}`, resolved.issues);
  const { accepted, replayed } = await sendRequest(c, body, resolved.value);
  if (replayed) c.header("Idempotent-Replayed", "true");
  c.header("Location", `/v1/emails/${accepted.id}`);
  return accepted;
}

/** Accepts a validated request (`body` as received, for the Idempotency-Key's fingerprint); throws the API's errors. */
async function sendRequest(c: Context<AppEnv>, body: unknown, request: ResolvedEmail): Promise<{ accepted: Pick<Accepted, "id" | "status">; replayed: boolean }> {
  const header = c.req.header("Idempotency-Key");
  const key = header === undefined ? undefined : parseIdempotencyKey(header);
  if (key && !key.ok) throw new ApiError("validation_error", "the Idempotency-Key header is not valid", [{ path: "headers.Idempotency-Key", message: key.message }]);
  const schedule = resolveSchedule(request.scheduledAt, new Date());
  if (!schedule.ok) throw new ApiError("validation_error", "the request is not a valid email", [{ path: "scheduled_at", message: schedule.message }]);
  const { senderDomains } = c.var.apiKey;
  if (!maySendFrom(senderDomains, (request.from ?? getConfig(c.env).mailFrom).address)) {
    throw new ApiError("forbidden", `this API key may send only from ${senderDomains!.join(", ")}${request.from ? "" : " (from defaults to MAIL_FROM)"}`);
  }

  const origin = { apiKeyName: c.var.apiKey.name, requestId: c.var.requestId };
  const accept = (id?: string) => acceptEmail(c.env, getConfig(c.env), { ...request, scheduledAt: schedule.at }, { ...origin, id, log: c.var.log });
  const result: IdempotentAccept = key
    ? await acceptOnce(c.env.DB, { apiKeyName: origin.apiKeyName, key: key.key, fingerprint: await fingerprintBody(body), log: c.var.log }, accept)
    : { kind: "accepted", accepted: await accept() };
  switch (result.kind) {
    case "mismatch":
      throw new ApiError("validation_error", "this Idempotency-Key was already used with a different request body", [
        { path: "headers.Idempotency-Key", message: "already used with a different request body" },
      ]);
    case "in_flight":
      throw new ApiError("conflict", "a request with this Idempotency-Key is still being accepted; retry it in a moment");
    case "replay":
      return { accepted: result, replayed: true };
    case "accepted": {
      const recipientCount = request.to.length + (request.cc?.length ?? 0) + (request.bcc?.length ?? 0);
      c.var.log.info("email accepted", { email_id: result.accepted.id, status: result.accepted.status, recipient_count: recipientCount, tags: request.tags });
      return { accepted: result.accepted, replayed: false };
    }
    default: {
      const unreachable: never = result;
      throw new Error(`unhandled result ${JSON.stringify(unreachable)}`);
    }
  }
}
