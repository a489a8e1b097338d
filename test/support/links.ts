// Which links the suite's real parts run on: `COOLCTL_TEST_LINKS=plain` (the default) or `secure`
// (`npm run test:secure`, docs/security.md "The suite on secured links"). Read here and nowhere
// else: in secure mode every etcd cluster a test starts has TLS, client certificates and auth on
// (etcd-cluster.ts), and every hall runs its broker on TLS with a user and its OPC-UA units on
// SignAndEncrypt with explicit trust (hall.ts). A test whose point is a plain link pins it itself.

export type TestLinks = 'plain' | 'secure';

export const TEST_LINKS_VARIABLE = 'COOLCTL_TEST_LINKS';

/** The mode `value` names; anything but unset, `plain` or `secure` is an error that says what to set. */
export function parseTestLinks(value: string | undefined): TestLinks {
  if (value === undefined || value === '' || value === 'plain') return 'plain';
  if (value === 'secure') return 'secure';
  throw new Error(
    `${TEST_LINKS_VARIABLE}=${JSON.stringify(value)}: expected "plain" (the default) or "secure" ` +
      '(npm run test:secure)',
  );
}

/**
 * The suite's mode, read once when test support loads: a wrong value fails every test file at its
 * start, so no run silently falls back to plain links.
 */
export const TEST_LINKS: TestLinks = parseTestLinks(process.env[TEST_LINKS_VARIABLE]);

/** Whether tests start their etcd, broker and OPC-UA links secured. */
export function secureLinks(): boolean {
  return TEST_LINKS === 'secure';
}
