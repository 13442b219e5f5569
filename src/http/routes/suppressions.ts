// /v1/suppressions: each API key's suppression list, Resend's API (its SDK's suppressions.add/list/get/
// remove and suppressions.batch.add/remove work unchanged). Entries come from bounces and complaints, or are
// added by hand; mail to a listed address is not sent (the recipient is "suppressed"). A key sees and
// changes only its own list.
import { Hono } from "hono";
import type * as z from "zod";
import { validate } from "../../core/schema";
import { addSuppressionSchema, batchAddSuppressionsSchema, batchRemoveSuppressionsSchema, suppressionOriginSchema } from "../../core/suppression-request";
import { enqueueWebhookEvents } from "../../delivery/webhooks";
import { addSuppressions, getSuppression, listSuppressions, removeSuppressions, type SuppressionRecord } from "../../store/suppressions";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { readJsonBody } from "../json-body";
import { cursorNotFound, readPageRequest } from "../pagination";
import type { suppressionAddedSchema, suppressionBatchAddedSchema, suppressionBatchRemovedSchema, suppressionListSchema, suppressionRemovedSchema, suppressionSchema } from "../responses";

const notFound = (idOrEmail: string) => new ApiError("not_found", `no suppression ${idOrEmail.slice(0, 320)} on this key's list`);

const entryOf = (s: SuppressionRecord) => ({ id: s.id, email: s.email, origin: s.origin, source_id: s.sourceId, created_at: s.createdAt });

async function body<T>(c: Parameters<typeof readJsonBody>[0], schema: z.ZodType<T>, what: string): Promise<T> {
  const validated = validate(schema, await readJsonBody(c));
  if (!validated.ok) throw new ApiError("validation_error", `the request is not a valid ${what}`, validated.issues);
  return validated.value;
}

export const suppressionRoutes = new Hono<AppEnv>()
  .post("/", async (c) => {
    const { email } = await body(c, addSuppressionSchema, "suppression");
    const { entries, created, webhookEvents } = await addSuppressions(c.env.DB, c.var.apiKey.name, [email], new Date().toISOString());
    await enqueueWebhookEvents(c.env.WEBHOOKS, webhookEvents, c.var.log);
    c.var.log.info("suppression added", { outcome: created[0] ? "added" : "already_listed", recipient: email });
    return c.json({ object: "suppression", id: entries[0]!.id } satisfies z.output<typeof suppressionAddedSchema>, created[0] ? 201 : 200);
  })
  .post("/batch/add", async (c) => {
    const { emails } = await body(c, batchAddSuppressionsSchema, "batch of suppressions");
    const { entries, created, webhookEvents } = await addSuppressions(c.env.DB, c.var.apiKey.name, emails, new Date().toISOString());
    await enqueueWebhookEvents(c.env.WEBHOOKS, webhookEvents, c.var.log);
    c.var.log.info("suppressions added", { added: created.filter(Boolean).length, listed: emails.length });
    return c.json({ data: entries.map((e) => ({ object: "suppression" as const, id: e.id })) } satisfies z.output<typeof suppressionBatchAddedSchema>);
  })
  .post("/batch/remove", async (c) => {
    const request = await body(c, batchRemoveSuppressionsSchema, "batch removal of suppressions");
    const named = "emails" in request ? request.emails : request.ids;
    const { removed, webhookEvents } = await removeSuppressions(c.env.DB, c.var.apiKey.name, named, new Date().toISOString());
    await enqueueWebhookEvents(c.env.WEBHOOKS, webhookEvents, c.var.log);
    c.var.log.info("suppressions removed", { removed: removed.filter(Boolean).length, named: named.length });
    // What was not on the list is answered with the id or address it was named by, deleted: false.
    return c.json({ data: named.map((n, i) => ({ object: "suppression" as const, id: removed[i] ?? n, deleted: removed[i] !== undefined })) } satisfies z.output<typeof suppressionBatchRemovedSchema>);
  })
  .get("/", async (c) => {
    const { origin, ...query } = c.req.query();
    const validOrigin = origin === undefined ? undefined : validate(suppressionOriginSchema, origin);
    if (validOrigin && !validOrigin.ok) throw new ApiError("validation_error", "the query is not a valid page request", validOrigin.issues.map((i) => ({ ...i, path: "origin" })));
    const page = readPageRequest(query);
    const found = await listSuppressions(c.env.DB, c.var.apiKey.name, page, validOrigin?.ok ? validOrigin.value : undefined);
    if (!found) throw cursorNotFound(page, "suppression");
    return c.json({ object: "list", has_more: found.hasMore, data: found.entries.map(entryOf) } satisfies z.output<typeof suppressionListSchema>);
  })
  .get("/:idOrEmail", async (c) => {
    const idOrEmail = c.req.param("idOrEmail");
    const entry = await getSuppression(c.env.DB, c.var.apiKey.name, idOrEmail);
    if (!entry) throw notFound(idOrEmail);
    return c.json({ object: "suppression", ...entryOf(entry) } satisfies z.output<typeof suppressionSchema>);
  })
  .delete("/:idOrEmail", async (c) => {
    const idOrEmail = c.req.param("idOrEmail");
    const { removed, webhookEvents } = await removeSuppressions(c.env.DB, c.var.apiKey.name, [idOrEmail], new Date().toISOString());
    if (!removed[0]) throw notFound(idOrEmail);
    await enqueueWebhookEvents(c.env.WEBHOOKS, webhookEvents, c.var.log);
    c.var.log.info("suppression removed", { suppression_id: removed[0] });
    return c.json({ object: "suppression", id: removed[0], deleted: true } satisfies z.output<typeof suppressionRemovedSchema>);
  });
