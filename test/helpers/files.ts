// Attachment content for tests: binary bytes that trip careless encoders, base64 and SHA-256 of them.

export function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

export async function sha256(bytes: Uint8Array): Promise<string> {
  return [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Every byte value, several times over, with CR, LF, NUL and dots where a careless encoder would trip. */
export function binary(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7 + (i >> 8)) & 0xff;
  bytes.set([0x0d, 0x0a, 0x2e, 0x0d, 0x0a, 0x00], 100);
  return bytes;
}
