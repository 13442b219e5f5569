// A request's template ({id, variables, locale}) made into a subject and bodies, or the issues that
// stop it: an unknown template, every variable the template uses but the data lacks (all of them at
// once, by path), and a rendered subject or body the API would refuse had the client sent it itself.
import { chooseVariant, renderVariant, RenderTooLong, variableProblems, type RenderedTemplate, type TemplateCatalog } from "./templates";
import { MAX_BODY_CHARS, MAX_SUBJECT_LENGTH, NOT_IN_A_HEADER, type SendEmailRequest, type Validated, type ValidationIssue } from "./schema";

export interface TemplateRequest {
  id: string;
  variables: Record<string, unknown>;
  locale?: string;
}

const PROBLEM = { missing: "is used by the template but not given (null counts as not given)", not_text: "is an object or array where the template puts text" };

/** `at` is where the request holds the template ("template" in an email; "" in the render endpoint's body). */
export function renderTemplateRequest(catalog: TemplateCatalog, request: TemplateRequest, at: string): Validated<RenderedTemplate> {
  const path = (field: string) => (at ? `${at}.${field}` : field);
  const template = catalog.templates.get(request.id);
  if (!template) return { ok: false, issues: [{ path: path("id"), message: `no template named "${request.id.slice(0, 64)}" (GET /v1/templates lists them)` }] };
  const variant = chooseVariant(template, request.locale);
  const problems = variableProblems(catalog, variant, request.variables);
  if (problems.length > 0) return { ok: false, issues: problems.map(({ name, problem }) => ({ path: path(`variables.${name}`), message: PROBLEM[problem] })) };
  let rendered: RenderedTemplate;
  try {
    rendered = renderVariant(catalog, variant, request.variables, { maxHtmlChars: MAX_BODY_CHARS, maxSubjectChars: MAX_SUBJECT_LENGTH });
  } catch (error) {
    // Stopped as soon as a part passed its limit: the rest was never built.
    if (error instanceof RenderTooLong) return { ok: false, issues: [{ path: path("variables"), message: error.message }] };
    throw error;
  }
  const issues: ValidationIssue[] = [];
  if (rendered.subject.trim() === "") issues.push({ path: path("variables"), message: "the rendered subject is empty" });
  if (NOT_IN_A_HEADER.test(rendered.subject)) issues.push({ path: path("variables"), message: "the rendered subject contains a line break or control character" });
  for (const part of ["html", "text"] as const) {
    if (rendered[part].length > MAX_BODY_CHARS) issues.push({ path: path("variables"), message: `the rendered ${part} is longer than ${MAX_BODY_CHARS} characters` });
    else if (rendered[part].trim() === "") issues.push({ path: path("variables"), message: `the rendered ${part} is empty` });
  }
  return issues.length > 0 ? { ok: false, issues } : { ok: true, value: rendered };
}

/** An email as it is stored and sent: its own subject and bodies, or those its template rendered. */
export type ResolvedEmail = Omit<SendEmailRequest, "template" | "subject"> & {
  subject: string;
  /** The template it was made from, and the locale variant used (null: the default). */
  template?: { id: string; locale: string | null };
};

/**
 * Renders the request's template, if it has one; a subject the request gives wins over the template's.
 * The catalog is asked for only then: a send without a template never reads the templates.
 */
export function resolveEmail(catalog: () => TemplateCatalog, request: SendEmailRequest): Validated<ResolvedEmail> {
  const { template, subject, ...rest } = request;
  if (!template) return { ok: true, value: { ...rest, subject: subject! } }; // the schema requires one without a template
  const rendered = renderTemplateRequest(catalog(), template, "template");
  if (!rendered.ok) return rendered;
  const { html, text, locale } = rendered.value;
  return { ok: true, value: { ...rest, subject: subject ?? rendered.value.subject, html, text, template: { id: template.id, locale } } };
}
