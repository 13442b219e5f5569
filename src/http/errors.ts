// The error contract: one error class, a closed set of codes, one code→status map, one JSON shape.
// Every error response the API sends is built here.
import type * as z from "zod";
import type { ValidationIssue } from "../core/schema";
import type { errorSchema } from "./responses";

export const ERROR_STATUS = {
  invalid_json: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  validation_error: 422,
  rate_limited: 429,
  internal_error: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;
export type ErrorStatus = (typeof ERROR_STATUS)[ErrorCode];
/** One problem with one field of a request, as validation reports it. */
export type FieldIssue = ValidationIssue;

export class ApiError extends Error {
  readonly status: ErrorStatus;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly issues?: FieldIssue[],
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = "ApiError";
    this.status = ERROR_STATUS[code];
  }
}

/** An error answer lists at most this many issues, then says how many more there are: its size stays bounded. */
export const MAX_ISSUES = 50;

function capIssues(issues: FieldIssue[]): FieldIssue[] {
  if (issues.length <= MAX_ISSUES) return issues;
  return [...issues.slice(0, MAX_ISSUES), { path: "(body)", message: `and ${issues.length - MAX_ISSUES} more issues` }];
}

/**
 * `error` is Mailroom's shape; `statusCode`, `name` (the code) and `message` (naming every field at fault)
 * are where the Resend SDKs look, so their error objects say what went wrong.
 */
export function errorBody(code: ErrorCode, message: string, allIssues?: FieldIssue[]) {
  const issues = allIssues && capIssues(allIssues);
  const detail = issues?.length ? `${message}: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}` : message;
  return { statusCode: ERROR_STATUS[code], name: code, message: detail, error: { code, message, ...(issues ? { issues } : {}) } } satisfies z.output<typeof errorSchema>;
}

export function toErrorResponse(error: ApiError): Response {
  return Response.json(errorBody(error.code, error.message, error.issues), {
    status: error.status,
    headers: error.headers,
  });
}
