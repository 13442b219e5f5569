// The one way a route sends: validation and template rendering, the schedule, the key's sender domains,
// the Idempotency-Key header, then the durable accept (D1 rows and queue jobs, all or none). POST
// /v1/emails and the classic POST /send-notification differ only in the request they validate and the
// answer they give; POST /v1/emails/batch sends up to 100 at once, all-or-nothing.
import type { Context } from "hono";
import { acceptEmails, type AcceptRequest, type Accepted } from "../accept";
import { getConfig } from "../config";
import { fingerprintBody, parseIdempotencyKey } from "../core/idempotency-key";
import { maySendFrom } from "../core/key-scope";
import { resolveSchedule } from "../core/schedule";
import { sendEmailSchema, validate, type SendEmailRequest, type Validated, type ValidationIssue } from "../core/schema";
import { resolveEmail } from "../core/template-request";
import { templateCatalog } from "../templates/catalog";
import type * as z from "zod";
import { acceptOnce, type IdempotentAccept } from "../idempotency";
import type { KeyFence } from "../store/messages";
import type { AppEnv } from "./context";
import { ApiError } from "./errors";
import { readJsonBody } from "./json-body";

/** The most messages in one POST /v1/emails/batch (Resend's limit too). */
export const MAX_BATCH = 100;

/**
 * Reads the JSON body, validates it with `schema` (a 422 says it is not a valid `what`), sends it, and
 * sets Location (and Idempotent-Replayed on a replay). The route gives the answer's body.
 */
export async function sendFromBody(c: Context<AppEnv>, schema: z.ZodType<SendEmailRequest>, what: string): Promise<Accepted> {
  const body = await readJsonBody(c);
  const request = prepare(c, schema, body, new Date());
  if (!request.ok) throw new ApiError("validation_error", `the request is not a valid ${what}`, request.issues);
  const [accepted] = await sendRequests(c, body, [request.value]);
  c.header("Location", `/v1/emails/${accepted!.id}`);
  return accepted!;
}

/** POST /v1/emails/batch: every message is checked before any is stored; a 422 names the failing indexes and fields. */
export async function sendBatchFromBody(c: Context<AppEnv>): Promise<Accepted[]> {
  const body = await readJsonBody(c);
  if (c.req.header("x-batch-validation")?.toLowerCase() === "permissive") {
    throw new ApiError("validation_error", "Mailroom takes a batch all-or-nothing", [{ path: "headers.x-batch-validation", message: 'only "strict" (all-or-nothing) is offered' }]);
  }
  if (!Array.isArray(body) || body.length === 0 || body.length > MAX_BATCH) {
    throw new ApiError("validation_error", "the request is not a valid batch", [{ path: "(body)", message: `must be an array of 1 to ${MAX_BATCH} emails` }]);
  }
  const now = new Date();
  const prepared = body.map((item) => prepare(c, sendEmailSchema, item, now));
  const issues = prepared.flatMap((p, i) => (p.ok ? [] : p.issues.map((issue) => ({ ...issue, path: issue.path === "(body)" ? `${i}` : `${i}.${issue.path}` }))));
  if (issues.length > 0) {
    const failing = prepared.flatMap((p, i) => (p.ok ? [] : [i]));
    throw new ApiError("validation_error", `the batch is not valid (emails ${failing.join(", ")}); nothing was sent`, issues);
  }
  return sendRequests(c, body, prepared.map((p) => (p as Extract<typeof p, { ok: true }>).value));
}

/** One message, validated, its template rendered and its schedule resolved; the key's sender domains checked (403). */
function prepare(c: Context<AppEnv>, schema: z.ZodType<SendEmailRequest>, body: unknown, now: Date): Validated<AcceptRequest> {
  const validated = validate(schema, body);
  if (!validated.ok) return validated;
  const resolved = resolveEmail(templateCatalog, validated.value);
  if (!resolved.ok) return resolved;
  const request = resolved.value;
  const schedule = resolveSchedule(request.scheduledAt, now);
  if (!schedule.ok) return { ok: false, issues: [{ path: "scheduled_at", message: schedule.message }] satisfies ValidationIssue[] };
  const { senderDomains } = c.var.apiKey;
  if (!maySendFrom(senderDomains, (request.from ?? getConfig(c.env).mailFrom).address)) {
    throw new ApiError("forbidden", `this API key may send only from ${senderDomains!.join(", ")}${request.from ? "" : " (from defaults to MAIL_FROM)"}`);
  }
  return { ok: true, value: { ...request, scheduledAt: schedule.at } };
}

/**
 * Accepts checked requests (`body` as received, for the Idempotency-Key's fingerprint), sets
 * Idempotent-Replayed on a replay, and returns what was accepted, in order; throws the API's errors.
 */
async function sendRequests(c: Context<AppEnv>, body: unknown, requests: AcceptRequest[]): Promise<Accepted[]> {
  const header = c.req.header("Idempotency-Key");
  const key = header === undefined ? undefined : parseIdempotencyKey(header);
  if (key && !key.ok) throw new ApiError("validation_error", "the Idempotency-Key header is not valid", [{ path: "headers.Idempotency-Key", message: key.message }]);

  const origin = { apiKeyName: c.var.apiKey.name, requestId: c.var.requestId, log: c.var.log };
  const accept = (ids: string[], fence?: KeyFence) => acceptEmails(c.env, getConfig(c.env), requests, { ...origin, ids, fence });
  const result: IdempotentAccept = key
    ? await acceptOnce(c.env.DB, { apiKeyName: origin.apiKeyName, key: key.key, fingerprint: await fingerprintBody(body), count: requests.length, log: c.var.log }, accept)
    : { kind: "accepted", accepted: await accept(requests.map(() => crypto.randomUUID())) };
  switch (result.kind) {
    case "mismatch":
      throw new ApiError("validation_error", "this Idempotency-Key was already used with a different request body", [
        { path: "headers.Idempotency-Key", message: "already used with a different request body" },
      ]);
    case "in_flight":
      throw new ApiError("conflict", "a request with this Idempotency-Key is still being accepted; retry it in a moment");
    case "replay":
      c.header("Idempotent-Replayed", "true");
      return result.ids.map((id) => ({ id, status: result.status }));
    case "accepted": {
      for (const [i, accepted] of result.accepted.entries()) {
        const request = requests[i]!;
        const recipientCount = request.to.length + (request.cc?.length ?? 0) + (request.bcc?.length ?? 0);
        c.var.log.info("email accepted", { email_id: accepted.id, status: accepted.status, recipient_count: recipientCount, tags: request.tags });
      }
      return result.accepted;
    }
    default: {
      const unreachable: never = result;
      throw new Error(`unhandled result ${JSON.stringify(unreachable)}`);
    }
  }
}
