// The body of every refused or failed API request, as the OpenAPI description states it: a stable
// COOLCTL_E_… code, a message that says what to fix, and the list of problems.
export const ErrorBody = {
  type: 'object',
  properties: {
    error: { type: 'string' },
    message: { type: 'string' },
    details: { type: 'array', items: { type: 'string' } },
  },
} as const;
