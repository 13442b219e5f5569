// /v1/templates: what templates there are (their locales and the variables they use), and rendering one
// with given data without sending it — the same rendering, and the same 422s, as a templated send.
import { Hono } from "hono";
import { renderTemplateRequest } from "../../core/template-request";
import { localesOf, templateVariables } from "../../core/templates";
import { renderTemplateSchema, validate } from "../../core/schema";
import { templateCatalog } from "../../templates/catalog";
import type * as z from "zod";
import type { AppEnv } from "../context";
import type { renderedTemplateSchema, templateListSchema } from "../responses";
import { ApiError } from "../errors";
import { readJsonBody } from "../json-body";
import { sendRateLimit } from "../middleware/send-rate-limit";

export const templateRoutes = new Hono<AppEnv>()
  .get("/", (c) => {
    const catalog = templateCatalog();
    const data = [...catalog.templates.values()]
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .map((template) => {
        const variants = [...template.variants.values()];
        return {
          name: template.name,
          locales: localesOf(template),
          variables: [...new Set(variants.flatMap((v) => templateVariables(catalog, v)))].sort(),
        };
      });
    return c.json({ data } satisfies z.output<typeof templateListSchema>);
  })
  // Rendering costs what a templated send costs, so it is counted by the same per-key limit.
  .post("/:name/render", sendRateLimit(), async (c) => {
    const name = c.req.param("name");
    const catalog = templateCatalog();
    if (!catalog.templates.has(name)) throw new ApiError("not_found", `no template named "${name.slice(0, 64)}"`);
    const validated = validate(renderTemplateSchema, await readJsonBody(c));
    if (!validated.ok) throw new ApiError("validation_error", "the request is not a valid render request", validated.issues);
    const rendered = renderTemplateRequest(catalog, { id: name, ...validated.value }, "");
    if (!rendered.ok) throw new ApiError("validation_error", `the template "${name}" cannot be rendered with these variables`, rendered.issues);
    return c.json(rendered.value satisfies z.output<typeof renderedTemplateSchema>);
  });
