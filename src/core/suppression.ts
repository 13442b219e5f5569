// When an address goes on its key's suppression list by itself: on a permanent refusal whose status says
// the address is bad (RFC 3463: 5.1.1 no such mailbox, 5.1.2 bad domain, 5.1.3 bad address syntax, 5.1.6
// moved, 5.1.10 null MX; 5.2.1 mailbox disabled), from the SMTP session or a later report, and on every
// complaint. Never on a temporary failure, a full mailbox, or a refusal for policy, spam or content (5.7.x):
// those say nothing about the address, and suppressing them would lose mail the next day.

export const ADDRESS_BAD_STATUSES = new Set(["5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"]);

export function suppressesAddress(enhancedCode: string | undefined | null): boolean {
  return enhancedCode !== undefined && enhancedCode !== null && ADDRESS_BAD_STATUSES.has(enhancedCode);
}
