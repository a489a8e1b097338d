// What a user's name and password must be: one rule for the API that adds users (its schema and the
// store's own check) and for the config check of the first admin's bootstrap file, so validate
// refuses what the daemon would. No imports: the config check loads it without the auth store.
export const USER_NAME = '^[a-z][a-z0-9._-]{0,63}$';
export const MIN_PASSWORD_CHARS = 12;

export function userProblems(name: string, password: string): string[] {
  const out: string[] = [];
  if (!new RegExp(USER_NAME).test(name)) out.push(`name: ${USER_NAME}`);
  if (password.length < MIN_PASSWORD_CHARS) out.push(`password: at least ${MIN_PASSWORD_CHARS} characters`);
  return out;
}
