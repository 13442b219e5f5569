// What an API key may do beyond authenticating: a key configured with sender domains may put only an
// address at one of them in `from` (the domain part compared without regard to letter case, exactly:
// a subdomain is another domain).

export function maySendFrom(senderDomains: string[] | undefined, address: string): boolean {
  if (!senderDomains) return true;
  const domain = address.slice(address.lastIndexOf("@") + 1).toLowerCase();
  return senderDomains.includes(domain);
}
