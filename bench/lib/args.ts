// Command-line options of the benches, checked the one way: an out-of-range or non-integer value
// stops the bench with the option's name and its range, before anything starts.

/** The integer option `name` of parseArgs' `values`, within [min, max], or an error naming both. */
export function intOption(values: Record<string, unknown>, name: string, min: number, max: number): number {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be ${min}…${max}`);
  return n;
}
