// The DKIM signer for a configuration, imported once per isolate: WebCrypto's key import is async, so it
// cannot happen in parseConfig; the key's bytes were checked there already.
import type { Config } from "../config";
import { importDkimKey } from "../core/dkim-key";
import type { DkimSigner } from "../core/dkim";

const signers = new WeakMap<NonNullable<Config["dkim"]>, Promise<DkimSigner>>();

/** The signer for DKIM_*, or undefined when mail goes out unsigned. A key WebCrypto refuses rejects (every attempt backs off). */
export function dkimSignerFor({ dkim }: Config): Promise<DkimSigner> | undefined {
  if (!dkim) return undefined;
  let signer = signers.get(dkim);
  if (!signer) {
    signer = importDkimKey(dkim.key).then((key) => ({ domain: dkim.domain, selector: dkim.selector, algorithm: dkim.key.algorithm, key }));
    signers.set(dkim, signer);
    // A refused key is not cached: the next attempt tries again (and fails the same way, loudly).
    signer.catch(() => signers.delete(dkim));
  }
  return signer;
}
