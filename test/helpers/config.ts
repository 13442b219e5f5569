// What parseConfig says is wrong with a set of settings: the problems of its ConfigError, or none.
import { ConfigError, parseConfig } from "../../src/config";

export function configProblems(env: Record<string, unknown>): string[] {
  try {
    parseConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}
