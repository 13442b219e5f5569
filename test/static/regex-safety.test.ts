// Every regular expression in src/ is checked by a ReDoS analyser (recheck): none may take super-linear time
// on some input, since they run on request data, relay replies, report text and paths. Expressions built at
// run time (new RegExp) cannot be checked, so src/ has none: a literal the analyser reads, or no regex.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import * as acorn from "acorn";
import { simple } from "acorn-walk";
import { checkSync } from "recheck";
import { transformWithOxc } from "vite";
import { describe, expect, it } from "vitest";

const SRC = path.resolve(import.meta.dirname, "../../src");
const files = readdirSync(SRC, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"));

interface Found {
  where: string;
  pattern: string;
  flags: string;
}

async function regexesOf(file: string): Promise<{ literals: Found[]; built: string[] }> {
  // TypeScript to JavaScript with vite's own transform (oxc); regex literals come through unchanged.
  const { code: source } = await transformWithOxc(readFileSync(path.join(SRC, file), "utf8"), file, { lang: "ts" });
  const ast = acorn.parse(source, { ecmaVersion: "latest", sourceType: "module" });
  const literals: Found[] = [];
  const built: string[] = [];
  const isRegExp = (callee: acorn.Node) => callee.type === "Identifier" && (callee as acorn.Identifier).name === "RegExp";
  simple(ast, {
    Literal(node) {
      const { regex } = node as acorn.Literal & { regex?: { pattern: string; flags: string } };
      if (regex) literals.push({ where: `src/${file}`, ...regex });
    },
    NewExpression(node) {
      if (isRegExp(node.callee)) built.push(`src/${file}`);
    },
    CallExpression(node) {
      if (isRegExp(node.callee)) built.push(`src/${file}`);
    },
  });
  return { literals, built };
}

const found = await Promise.all(files.map(regexesOf));
const literals = found.flatMap((f) => f.literals);

describe("the regular expressions in src/", () => {
  it("are all found (the walk sees the source's literals)", () => {
    expect(files.length).toBeGreaterThan(30);
    expect(literals.length).toBeGreaterThan(40);
    expect(literals.map((l) => l.where)).toContain("src/log.ts");
  });

  it("are literals: none is built at run time", () => {
    expect(found.flatMap((f) => f.built)).toEqual([]);
  });

  it("are safe from catastrophic backtracking, by recheck", () => {
    const unsafe = literals
      .map((l) => ({ ...l, diagnostics: checkSync(l.pattern, l.flags, { timeout: 10_000 }) }))
      .filter(({ diagnostics }) => diagnostics.status !== "safe")
      .map(({ where, pattern, flags, diagnostics }) => `${where} /${pattern}/${flags}: ${diagnostics.status}${"complexity" in diagnostics && diagnostics.complexity ? ` (${diagnostics.complexity.summary})` : ""}`);
    expect(unsafe).toEqual([]);
  });

  it("would catch one that is not (the check can fail)", () => {
    expect(checkSync("[^\\s<>]+@[^\\s<>]+", "g").status).toBe("vulnerable");
  });
});
