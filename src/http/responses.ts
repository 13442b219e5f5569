// What the API answers, as zod schemas: the handlers build their answers as these types (`satisfies`, so a
// field added to one and not the other fails the typecheck), and /openapi.json describes them from here.
import * as z from "zod";
import { WEBHOOK_EVENT_TYPES } from "../core/webhook-events";
import { ERROR_STATUS, type ErrorCode } from "./errors";

const id = z.string().meta({ description: "the email's id (a UUID)" });
const status = z.enum(["scheduled", "queued", "sending", "retrying", "sent", "failed", "canceled"]);
const lastEvent = z.enum(["queued", "scheduled", "sent", "delivered", "delivery_delayed", "bounced", "complained", "suppressed", "failed", "canceled"]).meta({ description: "Resend's name for the latest thing that happened to it" });

export const acceptedSchema = z.object({ id, status: z.enum(["queued", "scheduled"]) });
export const batchAcceptedSchema = z.object({ data: z.array(z.object({ id })).meta({ description: "the emails' ids, in the order sent" }) });
export const classicAcceptedSchema = z.object({ message: z.string(), id });
export const rescheduledSchema = z.object({ object: z.literal("email"), id });
export const canceledSchema = z.object({ object: z.literal("email"), id, status: z.literal("canceled") });
export const healthSchema = z.union([
  z.object({ status: z.literal("ok") }),
  // 503: the settings cannot work; which ones, by name (never their values).
  z.object({ status: z.literal("misconfigured"), settings: z.array(z.string()) }),
]);

export const emailViewSchema = z.object({
  id,
  status,
  from: z.string(),
  to: z.array(z.string()),
  cc: z.array(z.string()),
  bcc: z.array(z.string()),
  reply_to: z.array(z.string()),
  subject: z.string(),
  template: z.object({ id: z.string(), locale: z.string().nullable() }).nullable(),
  tags: z.array(z.object({ name: z.string(), value: z.string() })),
  created_at: z.string(),
  updated_at: z.string(),
  scheduled_at: z.string().nullable(),
  sent_at: z.string().nullable(),
  attempts: z.number().int(),
  last_error: z.string().nullable(),
  last_event: lastEvent,
  recipients: z.array(
    z.object({
      address: z.string(),
      status: z
        .enum(["pending", "sent", "deferred", "bounced", "delivered", "complained", "suppressed", "failed"])
        .meta({
          description:
            "bounced: refused for good (by the relay, or by a later report); delivered: a report said so; complained: marked as spam; suppressed: on the key's suppression list, not sent; failed: given up (retry window over, canceled, not sendable)",
        }),
      smtp_code: z.number().int().nullable(),
      detail: z.string().nullable(),
    }),
  ),
  events: z.array(
    z.object({
      at: z.string(),
      type: z.enum(["accepted", "sent", "deferred", "bounced", "delivered", "complained", "suppressed", "failed", "interrupted", "rescheduled", "canceled"]),
      attempt: z.number().int().nullable(),
      smtp_code: z.number().int().nullable(),
      detail: z.string().nullable(),
      recipient: z.string().nullable().meta({ description: "the recipient a per-recipient event (bounced) is about" }),
      transport: z.enum(["smtp", "cloudflare"]).nullable().meta({ description: "which transport carried the attempt this outcome is of (TRANSPORT); null on other events and on attempts that never left" }),
    }),
  ),
});

export const emailListSchema = z.object({
  object: z.literal("list"),
  has_more: z.boolean(),
  data: z.array(
    emailViewSchema
      .pick({ id: true, from: true, to: true, cc: true, bcc: true, reply_to: true, subject: true, created_at: true, scheduled_at: true, last_event: true })
      .extend({ message_id: z.string().meta({ description: "its RFC 5322 Message-ID" }) }),
  ),
});

const webhookEventType = z.enum(WEBHOOK_EVENT_TYPES);
const webhookStatus = z.enum(["enabled", "disabled"]);
const webhookId = z.string().meta({ description: "the webhook's id (a UUID)" });

export const webhookCreatedSchema = z.object({ object: z.literal("webhook"), id: webhookId, signing_secret: z.string().meta({ description: "whsec_…: verify deliveries with it" }) });
export const webhookSchema = z.object({
  object: z.literal("webhook"),
  id: webhookId,
  created_at: z.string(),
  status: webhookStatus,
  endpoint: z.string(),
  events: z.array(webhookEventType),
  signing_secret: z.string(),
});
export const webhookListSchema = z.object({
  object: z.literal("list"),
  has_more: z.boolean(),
  data: z.array(z.object({ id: webhookId, endpoint: z.string(), created_at: z.string(), status: webhookStatus, events: z.array(webhookEventType) })),
});
export const webhookChangedSchema = z.object({ object: z.literal("webhook"), id: webhookId });
export const webhookDeletedSchema = z.object({ object: z.literal("webhook"), id: webhookId, deleted: z.literal(true) });
export const webhookRotatedSchema = webhookCreatedSchema;

const eventStatus = z.enum(["success", "pending", "failed", "attempting"]);
const eventId = z.string().meta({ description: "the event's id: the webhook-id of each of its deliveries" });
export const webhookEventListSchema = z.object({
  object: z.literal("list"),
  has_more: z.boolean(),
  data: z.array(z.object({ id: eventId, type: webhookEventType, created_at: z.string(), status: eventStatus })),
});
export const webhookEventSchema = z.object({
  object: z.literal("webhook_event"),
  id: eventId,
  type: webhookEventType,
  created_at: z.string(),
  status: eventStatus,
  next_attempt_at: z.string().nullable(),
  payload: z.object({ type: webhookEventType, created_at: z.string(), data: z.record(z.string(), z.unknown()) }),
});
export const webhookEventReplayedSchema = z.object({ object: z.literal("webhook_event"), id: eventId });
export const webhookAttemptListSchema = z.object({
  object: z.literal("list"),
  has_more: z.boolean(),
  data: z.array(
    z.object({
      id: z.string(),
      http_status_code: z.number().int().meta({ description: "0: no answer (timeout, refused connection)" }),
      response: z.string().meta({ description: "the first 1 KiB of the answer, or why there was none" }),
      sent_at: z.string(),
    }),
  ),
});

export const templateListSchema = z.object({
  data: z.array(
    z.object({
      name: z.string().meta({ description: "what template.id names" }),
      locales: z.array(z.string()).meta({ description: "the locale variants besides the default" }),
      variables: z.array(z.string()).meta({ description: "the variables it uses outside sections, in any variant" }),
    }),
  ),
});

export const renderedTemplateSchema = z.object({
  subject: z.string(),
  html: z.string(),
  text: z.string(),
  locale: z.string().nullable().meta({ description: "the variant used; null: the default" }),
});

export const errorSchema = z.object({
  statusCode: z.number().int(),
  name: z.string().meta({ description: "the error code" }),
  message: z.string().meta({ description: "the message, naming every field at fault" }),
  error: z.object({
    code: z.enum(Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  }),
});

const suppressionId = z.string().meta({ description: "the entry's id (a UUID)" });
const suppressionEntry = z.object({
  id: suppressionId,
  email: z.string().meta({ description: "the address, in lower case" }),
  origin: z.enum(["bounce", "complaint", "manual"]),
  source_id: z.string().nullable().meta({ description: "the email whose bounce or complaint added it" }),
  created_at: z.string(),
});
export const suppressionAddedSchema = z.object({ object: z.literal("suppression"), id: suppressionId });
export const suppressionSchema = suppressionEntry.extend({ object: z.literal("suppression") });
export const suppressionListSchema = z.object({ object: z.literal("list"), has_more: z.boolean(), data: z.array(suppressionEntry) });
export const suppressionRemovedSchema = z.object({ object: z.literal("suppression"), id: suppressionId, deleted: z.literal(true) });
export const suppressionBatchAddedSchema = z.object({ data: z.array(suppressionAddedSchema) });
export const suppressionBatchRemovedSchema = z.object({
  data: z.array(z.object({ object: z.literal("suppression"), id: z.string().meta({ description: "the entry's id, or what it was named by when it was not listed" }), deleted: z.boolean() })),
});
