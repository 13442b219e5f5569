// The templates shipped in templates/ (bundled by scripts/build-templates.mjs), read into a catalog once
// per isolate; Mustache caches each parsed template too.
import { readCatalog, type TemplateCatalog } from "../core/templates";
import { sampleFiles, templateFiles } from "./files.generated";

let catalog: TemplateCatalog | undefined;

export function templateCatalog(): TemplateCatalog {
  return (catalog ??= readCatalog(templateFiles, sampleFiles));
}
