// The OpenAPI 3.1 document of the whole API, built from the zod schemas the handlers validate requests
// with (src/core/schema.ts) and build their answers as (responses.ts), once per isolate; served at
// /openapi.json. A test checks that every route the app serves is in it, so it cannot drift.
import * as z from "zod";
import { classicNotificationSchema, renderTemplateSchema, rescheduleSchema, sendEmailSchema } from "../core/schema";
import { addSuppressionSchema, batchAddSuppressionsSchema, batchRemoveSuppressionsSchema } from "../core/suppression-request";
import { createWebhookSchema, updateWebhookSchema } from "../core/webhook-request";
import { MAX_BATCH } from "./send";
import {
  acceptedSchema,
  batchAcceptedSchema,
  canceledSchema,
  classicAcceptedSchema,
  emailListSchema,
  emailViewSchema,
  errorSchema,
  healthSchema,
  renderedTemplateSchema,
  rescheduledSchema,
  templateListSchema,
  suppressionAddedSchema,
  suppressionBatchAddedSchema,
  suppressionBatchRemovedSchema,
  suppressionListSchema,
  suppressionRemovedSchema,
  suppressionSchema,
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
} from "./responses";

interface Operation {
  method: "get" | "post" | "patch" | "delete";
  /** Hono's form: /v1/emails/:id. */
  path: string;
  summary: string;
  request?: z.ZodType;
  /** A request body the route takes (checked against `request` by a test); the reference page turns it into a curl. */
  example?: unknown;
  /** Example values of path parameters; a parameter without one is a shell variable in the curl ($ID). */
  pathExamples?: Record<string, string>;
  /** The success status and its body: JSON of this schema, or an HTML page. */
  answer: [status: number, schema: z.ZodType | "html"];
  /** Error statuses besides 500. */
  errors: number[];
  /** Needs no API key. */
  open?: boolean;
  /** Takes an Idempotency-Key header. */
  idempotent?: boolean;
  /** A list: takes limit, after and before (Resend's pagination). */
  paginated?: boolean;
}

const PAGINATION = [
  { name: "limit", in: "query", required: false, description: "1–100, default 20", schema: { type: "integer", minimum: 1, maximum: 100 } },
  { name: "after", in: "query", required: false, description: "the id of an item: the page of items after it (older); not with before", schema: { type: "string" } },
  { name: "before", in: "query", required: false, description: "the id of an item: the page of items before it (newer); not with after", schema: { type: "string" } },
];

const SENDING_ERRORS = [400, 401, 403, 409, 413, 415, 422, 429];

const WELCOME_VARIABLES = { user_name: "Ada Lovelace", email: "ada@example.com", product_name: "Acme", button_url: "https://acme.example/start", button_label: "Get started" };

/** In the order a user needs them: sending, then reading and changing, then templates; the operational routes last. */
export const OPERATIONS: Operation[] = [
  {
    method: "post",
    path: "/v1/emails",
    summary: "Send an email (raw or from a template), at once or scheduled",
    request: sendEmailSchema,
    example: { to: ["ada@example.com"], subject: "Your receipt", html: "<p>Thanks for your order.</p>", text: "Thanks for your order.", tags: [{ name: "category", value: "receipt" }] },
    answer: [202, acceptedSchema],
    errors: SENDING_ERRORS,
    idempotent: true,
  },
  {
    method: "post",
    path: "/v1/emails/batch",
    summary: `Send up to ${MAX_BATCH} emails, all or none`,
    request: z.array(sendEmailSchema).min(1).max(MAX_BATCH),
    example: [
      { to: "ada@example.com", subject: "Your receipt", text: "Thanks for your order." },
      { to: "grace@example.com", template: { id: "welcome", variables: { ...WELCOME_VARIABLES, user_name: "Grace Hopper", email: "grace@example.com" } } },
    ],
    answer: [202, batchAcceptedSchema],
    errors: SENDING_ERRORS,
    idempotent: true,
  },
  { method: "get", path: "/v1/emails/:id", summary: "An email's status, recipients and history", answer: [200, emailViewSchema], errors: [401, 404] },
  {
    method: "patch",
    path: "/v1/emails/:id",
    summary: "Move a scheduled email",
    request: rescheduleSchema,
    example: { scheduled_at: "2030-01-01T09:00:00Z" },
    answer: [200, rescheduledSchema],
    errors: [400, 401, 404, 409, 415, 422],
  },
  { method: "post", path: "/v1/emails/:id/cancel", summary: "Cancel an email not yet handed to the relay", answer: [200, canceledSchema], errors: [401, 404, 409] },
  { method: "get", path: "/v1/emails", summary: "The key's emails, newest first", answer: [200, emailListSchema], errors: [401, 422], paginated: true },
  { method: "get", path: "/v1/templates", summary: "The templates, their locales and variables", answer: [200, templateListSchema], errors: [401] },
  {
    method: "post",
    path: "/v1/templates/:name/render",
    summary: "Render a template without sending it",
    request: renderTemplateSchema,
    example: { variables: WELCOME_VARIABLES, locale: "en" },
    pathExamples: { name: "welcome" },
    answer: [200, renderedTemplateSchema],
    errors: [400, 401, 404, 415, 422],
  },
  {
    method: "post",
    path: "/v1/webhooks",
    summary: "Subscribe an endpoint to delivery events (signed, retried until delivered)",
    request: createWebhookSchema,
    example: { endpoint: "https://acme.example/webhooks/mailroom", events: ["email.sent", "email.bounced", "email.failed"] },
    answer: [201, webhookCreatedSchema],
    errors: [400, 401, 409, 415, 422],
  },
  { method: "get", path: "/v1/webhooks", summary: "The key's webhooks, newest first", answer: [200, webhookListSchema], errors: [401, 422], paginated: true },
  { method: "get", path: "/v1/webhooks/:id", summary: "A webhook, with its signing secret", answer: [200, webhookSchema], errors: [401, 404] },
  {
    method: "patch",
    path: "/v1/webhooks/:id",
    summary: "Change a webhook's endpoint, events or status",
    request: updateWebhookSchema,
    example: { status: "enabled" },
    answer: [200, webhookChangedSchema],
    errors: [400, 401, 404, 415, 422],
  },
  { method: "delete", path: "/v1/webhooks/:id", summary: "Delete a webhook and its events", answer: [200, webhookDeletedSchema], errors: [401, 404] },
  { method: "post", path: "/v1/webhooks/:id/signing-secret/rotate", summary: "A new signing secret; the old one also signs for 24 h", answer: [200, webhookRotatedSchema], errors: [401, 404] },
  { method: "get", path: "/v1/webhooks/:id/events", summary: "A webhook's events and their delivery status, newest first", answer: [200, webhookEventListSchema], errors: [401, 404, 422], paginated: true },
  { method: "get", path: "/v1/webhooks/:id/events/:eventId", summary: "One event, with its payload and next attempt", answer: [200, webhookEventSchema], errors: [401, 404] },
  { method: "post", path: "/v1/webhooks/:id/events/:eventId/replay", summary: "Deliver an event again (same webhook-id)", answer: [200, webhookEventReplayedSchema], errors: [401, 404, 409] },
  {
    method: "get",
    path: "/v1/webhooks/:id/events/:eventId/attempts",
    summary: "An event's delivery attempts, newest first",
    answer: [200, webhookAttemptListSchema],
    errors: [401, 404, 422],
    paginated: true,
  },
  {
    method: "post",
    path: "/v1/suppressions",
    summary: "Stop sending to an address (the key's suppression list)",
    request: addSuppressionSchema,
    example: { email: "ada@example.com" },
    answer: [201, suppressionAddedSchema],
    errors: [400, 401, 415, 422],
  },
  { method: "get", path: "/v1/suppressions", summary: "The key's suppression list, newest first (origin=bounce|complaint|manual)", answer: [200, suppressionListSchema], errors: [401, 422], paginated: true },
  { method: "get", path: "/v1/suppressions/:idOrEmail", summary: "One entry, by id or address", answer: [200, suppressionSchema], errors: [401, 404] },
  { method: "delete", path: "/v1/suppressions/:idOrEmail", summary: "Send to an address again", answer: [200, suppressionRemovedSchema], errors: [401, 404] },
  {
    method: "post",
    path: "/v1/suppressions/batch/add",
    summary: "Add up to 100 addresses",
    request: batchAddSuppressionsSchema,
    example: { emails: ["ada@example.com", "grace@example.com"] },
    answer: [200, suppressionBatchAddedSchema],
    errors: [400, 401, 415, 422],
  },
  {
    method: "post",
    path: "/v1/suppressions/batch/remove",
    summary: "Remove up to 100 entries, by address or id",
    request: batchRemoveSuppressionsSchema,
    example: { emails: ["ada@example.com"] },
    answer: [200, suppressionBatchRemovedSchema],
    errors: [400, 401, 415, 422],
  },
  {
    method: "post",
    path: "/send-notification",
    summary: "The classic FastAPI notification endpoint: {recipient, subject, content}",
    request: classicNotificationSchema,
    example: { recipient: "ada@example.com", subject: "Your receipt", content: "Thanks for your order." },
    answer: [202, classicAcceptedSchema],
    errors: SENDING_ERRORS,
    idempotent: true,
  },
  { method: "get", path: "/preview", summary: "The templates, linked to their previews (only with ENVIRONMENT=development)", answer: [200, "html"], errors: [404], open: true },
  {
    method: "get",
    path: "/preview/:name",
    summary: "A template rendered with its sample data, every locale (only with ENVIRONMENT=development)",
    pathExamples: { name: "welcome" },
    answer: [200, "html"],
    errors: [404],
    open: true,
  },
  { method: "get", path: "/healthz", summary: "Health check: 503 names the settings that cannot work", answer: [200, healthSchema], errors: [503], open: true },
  { method: "get", path: "/openapi.json", summary: "This document (OpenAPI 3.1)", answer: [200, z.record(z.string(), z.unknown())], errors: [], open: true },
  { method: "get", path: "/docs", summary: "This document as a page to read", answer: [200, "html"], errors: [], open: true },
];

const jsonSchema = (schema: z.ZodType) => {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  return rest;
};
const json = (schema: z.ZodType, example?: unknown) => ({ "application/json": { schema: jsonSchema(schema), ...(example === undefined ? {} : { example }) } });

const IDEMPOTENCY_KEY = {
  name: "Idempotency-Key",
  in: "header",
  required: false,
  description: "the same key with the same body again answers the first request's answer; with another body, 422",
  schema: { type: "string", minLength: 1, maxLength: 255 },
};

let document: Record<string, unknown> | undefined;

export function openApiDocument(): Record<string, unknown> {
  if (document) return document;
  const paths: Record<string, Record<string, unknown>> = {};
  const error = { description: "an error (see the error codes)", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } };
  for (const op of OPERATIONS) {
    const path = op.path.replace(/:(\w+)/g, "{$1}");
    const parameters = [
      ...[...op.path.matchAll(/:(\w+)/g)].map(([, name]) => ({
        name: name!,
        in: "path",
        required: true,
        schema: { type: "string" },
        ...(op.pathExamples?.[name!] ? { example: op.pathExamples[name!] } : {}),
      })),
      ...(op.idempotent ? [IDEMPOTENCY_KEY] : []),
      ...(op.paginated ? PAGINATION : []),
    ];
    paths[path] ??= {};
    paths[path][op.method] = {
      summary: op.summary,
      ...(op.open ? { security: [] } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(op.request ? { requestBody: { required: true, content: json(op.request, op.example) } } : {}),
      responses: {
        [op.answer[0]]: { description: "success", content: op.answer[1] === "html" ? { "text/html": { schema: { type: "string" } } } : json(op.answer[1]) },
        ...Object.fromEntries([...op.errors, 500].map((status) => [status, error])),
      },
    };
  }
  document = {
    openapi: "3.1.0",
    info: { title: "Mailroom", version: "1", description: "Email notifications through your own SMTP relay: accepted at once, delivered durably. Field names follow Resend's API." },
    security: [{ apiKey: [] }],
    paths,
    components: {
      securitySchemes: { apiKey: { type: "http", scheme: "bearer", description: "an API key from API_KEYS" } },
      schemas: { Error: jsonSchema(errorSchema) },
    },
  };
  return document;
}
