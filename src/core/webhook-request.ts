// What a client may send to POST and PATCH /v1/webhooks, validated with zod (Resend's CreateWebhookOptions
// and UpdateWebhookOptions). The endpoint's safety is checked separately (webhook-endpoint.ts), because
// what is allowed depends on ENVIRONMENT.
import * as z from "zod";
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from "./webhook-events";

const KNOWN = new Set<string>(WEBHOOK_EVENT_TYPES);

const events = z
  .array(z.string({ error: "each event type is a string" }), { error: `must be an array of event types (${WEBHOOK_EVENT_TYPES.join(", ")})` })
  .min(1, "must name at least one event type")
  .max(WEBHOOK_EVENT_TYPES.length * 2, "lists too many event types")
  .superRefine((types, ctx) => {
    types.forEach((type, i) => {
      if (!KNOWN.has(type)) ctx.addIssue({ code: "custom", path: [i], message: `"${type.slice(0, 64)}" is not an event type Mailroom sends (${WEBHOOK_EVENT_TYPES.join(", ")})` });
    });
  })
  .transform((types) => [...new Set(types)] as WebhookEventType[]);

const endpoint = z.string({ error: "must be a URL" }).min(1, "must be a URL");

export const createWebhookSchema = z.strictObject({ endpoint, events });
export const updateWebhookSchema = z
  .strictObject({ endpoint: endpoint.optional(), events: events.optional(), status: z.enum(["enabled", "disabled"], { error: "must be enabled or disabled" }).optional() })
  .refine((u) => u.endpoint !== undefined || u.events !== undefined || u.status !== undefined, "give at least one of endpoint, events, status");
