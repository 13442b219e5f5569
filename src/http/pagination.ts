// A list route's page request from its query string, and the error for a cursor that is not in the list.
import { paginationSchema, type PageRequest } from "../core/pagination";
import { validate } from "../core/schema";
import { ApiError } from "./errors";

export function readPageRequest(query: Record<string, string>): PageRequest {
  const validated = validate(paginationSchema, query);
  if (!validated.ok) throw new ApiError("validation_error", "the query is not a valid page request", validated.issues);
  return validated.value;
}

export function cursorNotFound(page: PageRequest, what: string): ApiError {
  const [field, id] = page.after ? ["after", page.after] : ["before", page.before!];
  return new ApiError("validation_error", "the query is not a valid page request", [{ path: field, message: `no ${what} with id ${id.slice(0, 64)} in this list` }]);
}
