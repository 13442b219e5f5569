// scripts/build-templates.mjs on a templates/ of its own: the script finds templates/ and src/templates/ from
// where it lies, so a copy in a temporary folder works on that folder's files and never on the project's.
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

function project(files: Record<string, string>) {
  const root = mkdtempSync(join(tmpdir(), "mailroom-templates-"));
  roots.push(root);
  mkdirSync(join(root, "scripts"));
  copyFileSync("scripts/build-templates.mjs", join(root, "scripts", "build-templates.mjs"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, "templates", path, ".."), { recursive: true });
    writeFileSync(join(root, "templates", path), text);
  }
  const run = (...args: string[]) =>
    promisify(execFile)(process.execPath, [join(root, "scripts", "build-templates.mjs"), ...args]).then(
      () => 0,
      (error: { code: number }) => error.code,
    );
  return { root, run, generated: () => readFileSync(join(root, "src", "templates", "files.generated.ts"), "utf8") };
}

describe("npm run templates", () => {
  it("writes the import list; --check passes only while it lists what is in templates/, and never writes", async () => {
    const { root, run, generated } = project({ "t/subject.mustache": "s", "t/html.mustache": "h", "t/sample.json": "{}" });
    expect(await run("--check")).toBe(1);
    expect(() => generated()).toThrow();
    expect(await run()).toBe(0);
    expect(generated()).toContain('"t/html.mustache": t0,');
    expect(generated()).toContain('"t/sample.json": s0,');
    expect(await run("--check")).toBe(0);
    writeFileSync(join(root, "templates", "t", "text.mustache"), "x");
    const before = generated();
    expect(await run("--check")).toBe(1);
    expect(generated()).toBe(before);
  });

  it("fails on a sample.json that is not JSON", async () => {
    const { run } = project({ "t/subject.mustache": "s", "t/html.mustache": "h", "t/sample.json": "{nope" });
    expect(await run()).not.toBe(0);
  });
});
