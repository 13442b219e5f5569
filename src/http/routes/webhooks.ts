// /v1/webhooks: a key's endpoints for delivery events, their signing secrets, and each one's events and
// attempts (with replay). Paths, fields and answers follow Resend's, so its SDKs' webhooks.* work against
// them unchanged. A key sees and changes only its own webhooks: another key's is a 404, like one that does
// not exist.
import { Hono } from "hono";
import type * as z from "zod";
import { getConfig } from "../../config";
import { validate } from "../../core/schema";
import { checkEndpoint } from "../../core/webhook-endpoint";
import { createWebhookSchema, updateWebhookSchema } from "../../core/webhook-request";
import { newSigningSecret } from "../../core/webhook-signature";
import { enqueueWebhookEvents } from "../../delivery/webhooks";
import { eventPayload, getWebhookEvent, listWebhookAttempts, listWebhookEvents, replayWebhookEvent } from "../../store/webhook-events";
import { countWebhooks, createWebhook, deleteWebhook, getWebhook, listWebhooks, MAX_WEBHOOKS_PER_KEY, rotateSigningSecret, updateWebhook } from "../../store/webhooks";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { ID_PATTERN } from "../ids";
import { readJsonBody } from "../json-body";
import { cursorNotFound, readPageRequest } from "../pagination";
import type {
  webhookAttemptListSchema,
  webhookChangedSchema,
  webhookCreatedSchema,
  webhookDeletedSchema,
  webhookEventListSchema,
  webhookEventReplayedSchema,
  webhookEventSchema,
  webhookListSchema,
  webhookRotatedSchema,
  webhookSchema,
} from "../responses";
import type { Context } from "hono";

const notFound = (id: string) => new ApiError("not_found", `no webhook with id ${id.slice(0, 64)}`);
const eventNotFound = (id: string) => new ApiError("not_found", `no event with id ${id.slice(0, 64)} for this webhook`);

/** The endpoint, if the settings allow it; else a 422 naming why. */
function allowedEndpoint(c: Context<AppEnv>, raw: string, what: string): string {
  const checked = checkEndpoint(raw, { development: getConfig(c.env).development });
  if (!checked.ok) throw new ApiError("validation_error", what, [{ path: "endpoint", message: checked.message }]);
  return checked.url;
}

/** The key's webhook `id`, or a 404. */
async function ownWebhook(c: Context<AppEnv>, id: string) {
  const webhook = ID_PATTERN.test(id) ? await getWebhook(c.env.DB, c.var.apiKey.name, id) : null;
  if (!webhook) throw notFound(id);
  return webhook;
}

export const webhookRoutes = new Hono<AppEnv>()
  .post("/", async (c) => {
    const validated = validate(createWebhookSchema, await readJsonBody(c));
    if (!validated.ok) throw new ApiError("validation_error", "the request is not a valid webhook", validated.issues);
    const endpoint = allowedEndpoint(c, validated.value.endpoint, "the request is not a valid webhook");
    if ((await countWebhooks(c.env.DB, c.var.apiKey.name)) >= MAX_WEBHOOKS_PER_KEY) {
      // Each one makes a row per event inside the delivery's own write: their number is bounded.
      throw new ApiError("conflict", `a key may have at most ${MAX_WEBHOOKS_PER_KEY} webhooks; delete one first`);
    }
    const webhook = { id: crypto.randomUUID(), apiKeyName: c.var.apiKey.name, endpoint, events: validated.value.events, signingSecret: newSigningSecret(), createdAt: new Date().toISOString() };
    await createWebhook(c.env.DB, webhook);
    c.var.log.info("webhook created", { webhook_id: webhook.id, events: webhook.events.join(","), endpoint_host: new URL(endpoint).host });
    return c.json({ object: "webhook", id: webhook.id, signing_secret: webhook.signingSecret } satisfies z.output<typeof webhookCreatedSchema>, 201);
  })
  .get("/", async (c) => {
    const page = readPageRequest(c.req.query());
    const found = await listWebhooks(c.env.DB, c.var.apiKey.name, page);
    if (!found) throw cursorNotFound(page, "webhook");
    return c.json({
      object: "list",
      has_more: found.hasMore,
      data: found.webhooks.map((w) => ({ id: w.id, endpoint: w.endpoint, created_at: w.createdAt, status: w.status, events: w.events })),
    } satisfies z.output<typeof webhookListSchema>);
  })
  .get("/:id", async (c) => {
    const w = await ownWebhook(c, c.req.param("id"));
    return c.json({ object: "webhook", id: w.id, created_at: w.createdAt, status: w.status, endpoint: w.endpoint, events: w.events, signing_secret: w.signingSecret } satisfies z.output<typeof webhookSchema>);
  })
  .patch("/:id", async (c) => {
    const id = c.req.param("id");
    const validated = validate(updateWebhookSchema, await readJsonBody(c));
    if (!validated.ok) throw new ApiError("validation_error", "the request is not a valid webhook change", validated.issues);
    const { endpoint, events, status } = validated.value;
    const change = { ...(endpoint !== undefined ? { endpoint: allowedEndpoint(c, endpoint, "the request is not a valid webhook change") } : {}), events, status };
    if (!ID_PATTERN.test(id) || !(await updateWebhook(c.env.DB, c.var.apiKey.name, id, change))) throw notFound(id);
    c.var.log.info("webhook changed", { webhook_id: id, status });
    return c.json({ object: "webhook", id } satisfies z.output<typeof webhookChangedSchema>);
  })
  .delete("/:id", async (c) => {
    const id = c.req.param("id");
    if (!ID_PATTERN.test(id) || !(await deleteWebhook(c.env.DB, c.var.apiKey.name, id))) throw notFound(id);
    c.var.log.info("webhook deleted", { webhook_id: id });
    return c.json({ object: "webhook", id, deleted: true } satisfies z.output<typeof webhookDeletedSchema>);
  })
  .post("/:id/signing-secret/rotate", async (c) => {
    const id = c.req.param("id");
    const secret = newSigningSecret();
    if (!ID_PATTERN.test(id) || !(await rotateSigningSecret(c.env.DB, c.var.apiKey.name, id, { secret, now: new Date() }))) throw notFound(id);
    c.var.log.info("webhook signing secret rotated; the previous one signs deliveries for 24 h more", { webhook_id: id });
    return c.json({ object: "webhook", id, signing_secret: secret } satisfies z.output<typeof webhookRotatedSchema>);
  })
  .get("/:id/events", async (c) => {
    const webhook = await ownWebhook(c, c.req.param("id"));
    const page = readPageRequest(c.req.query());
    const found = await listWebhookEvents(c.env.DB, webhook.id, page);
    if (!found) throw cursorNotFound(page, "event");
    return c.json({
      object: "list",
      has_more: found.hasMore,
      data: found.events.map((e) => ({ id: e.id, type: e.type, created_at: e.createdAt, status: e.status })),
    } satisfies z.output<typeof webhookEventListSchema>);
  })
  .get("/:id/events/:eventId", async (c) => {
    const webhook = await ownWebhook(c, c.req.param("id"));
    const eventId = c.req.param("eventId");
    const found = ID_PATTERN.test(eventId) ? await getWebhookEvent(c.env.DB, webhook.id, eventId) : null;
    if (!found) throw eventNotFound(eventId);
    const { event } = found;
    return c.json({
      object: "webhook_event",
      id: event.id,
      type: event.type,
      created_at: event.createdAt,
      status: event.status,
      next_attempt_at: event.status === "pending" || event.status === "attempting" ? event.nextAttemptAt : null,
      payload: eventPayload(found) as z.output<typeof webhookEventSchema>["payload"],
    } satisfies z.output<typeof webhookEventSchema>);
  })
  .post("/:id/events/:eventId/replay", async (c) => {
    const webhook = await ownWebhook(c, c.req.param("id"));
    const eventId = c.req.param("eventId");
    if (webhook.status === "disabled") throw new ApiError("conflict", "the webhook is disabled; enable it (PATCH status: enabled) to replay its events");
    const now = new Date();
    const replayed = ID_PATTERN.test(eventId) ? await replayWebhookEvent(c.env.DB, webhook.id, eventId, now) : "unknown";
    if (replayed === "unknown") throw eventNotFound(eventId);
    if (replayed === "attempting") throw new ApiError("conflict", "an attempt to deliver this event is under way; replay it once it is over");
    await enqueueWebhookEvents(c.env.WEBHOOKS, [{ id: eventId, dueAt: now.toISOString() }], c.var.log);
    c.var.log.info("webhook event replayed", { webhook_id: webhook.id, webhook_event_id: eventId });
    return c.json({ object: "webhook_event", id: eventId } satisfies z.output<typeof webhookEventReplayedSchema>);
  })
  .get("/:id/events/:eventId/attempts", async (c) => {
    const webhook = await ownWebhook(c, c.req.param("id"));
    const eventId = c.req.param("eventId");
    const page = readPageRequest(c.req.query());
    const found = ID_PATTERN.test(eventId) && (await getWebhookEvent(c.env.DB, webhook.id, eventId));
    if (!found) throw eventNotFound(eventId);
    const attempts = await listWebhookAttempts(c.env.DB, eventId, page);
    if (!attempts) throw cursorNotFound(page, "attempt");
    return c.json({
      object: "list",
      has_more: attempts.hasMore,
      data: attempts.attempts.map((a) => ({ id: a.id, http_status_code: a.httpStatusCode, response: a.response, sent_at: a.sentAt })),
    } satisfies z.output<typeof webhookAttemptListSchema>);
  });
