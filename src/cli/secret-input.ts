// Where `login` and `user add` get a password: a file (--password-file, the line end after it
// dropped), else standard input. On a terminal the CLI prompts (on stderr: stdout may be the token
// file) and reads one line with echo off, in raw mode, restoring the terminal's mode on every way
// out — Enter, Ctrl-C (cancelled, nothing sent), Ctrl-D, the deadline, a read error; from a pipe it
// reads the first line. Never an argument: it would show in `ps` and the shell's history.
import { readFileSync } from 'node:fs';
import { CancelledError, UsageError } from '../util/cli-args.ts';

/** What the reader needs of standard input: a stream, and on a terminal the mode switch. */
export interface SecretInput extends NodeJS.ReadableStream {
  isTTY?: boolean;
  isRaw?: boolean;
  setRawMode?: (raw: boolean) => unknown;
}

export interface SecretSource {
  /** --password-file, if given. */
  file?: string | undefined;
  input: SecretInput;
  /** Where the prompt goes (stderr). */
  output: NodeJS.WritableStream;
  /** The prompt, e.g. `password for alice: `. */
  prompt: string;
  /** On a terminal: ask twice and refuse two different answers (a new password nobody has seen). */
  confirm?: boolean;
  /** Typing or piping longer than this fails (a terminal: 5 minutes, as sudo; a pipe: 60 s). */
  timeoutMs?: number;
}

/** A password is at most 1024 characters (the API's limit); a line longer than this is not one. */
const MAX_LINE_BYTES = 4096;

export async function readSecret(s: SecretSource): Promise<string> {
  if (s.file !== undefined) return fromFile(s.file);
  if (s.input.isTTY && s.input.setRawMode) {
    const timeoutMs = s.timeoutMs ?? 300_000;
    const first = await promptHidden(s.input, s.output, s.prompt, timeoutMs);
    if (s.confirm) {
      const again = await promptHidden(s.input, s.output, 'again: ', timeoutMs);
      if (again !== first) throw new UsageError('the two passwords differ; nothing was sent');
    }
    return nonEmpty(first, 'the password typed');
  }
  return nonEmpty(await firstLine(s.input, s.timeoutMs ?? 60_000), 'standard input');
}

function fromFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new UsageError(`--password-file ${file}: cannot read the file (${code})`);
  }
  return nonEmpty(text.replace(/\r?\n$/, ''), `--password-file ${file}`);
}

function nonEmpty(password: string, from: string): string {
  if (password === '') throw new UsageError(`${from}: no password in it`);
  return password;
}

/** The first line of a pipe or file (without its line end), or all of it if it has none. */
function firstLine(input: SecretInput, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err: Error | null, line?: string): void => {
      clearTimeout(timer);
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onError);
      input.pause();
      if (err) reject(err);
      else resolve(line!);
    };
    const onData = (c: Buffer | string): void => {
      const b = typeof c === 'string' ? Buffer.from(c) : c;
      const nl = b.indexOf(0x0a);
      chunks.push(nl === -1 ? b : b.subarray(0, nl));
      size += b.length;
      if (nl !== -1) done(null, Buffer.concat(chunks).toString('utf8').replace(/\r$/, ''));
      else if (size > MAX_LINE_BYTES)
        done(
          new UsageError(
            `standard input: no line end in the first ${MAX_LINE_BYTES} bytes; give the password alone, on one line`,
          ),
        );
    };
    const onEnd = (): void => done(null, Buffer.concat(chunks).toString('utf8').replace(/\r$/, ''));
    const onError = (err: Error): void => done(new UsageError(`standard input: ${err.message}`));
    const timer = setTimeout(
      () =>
        done(
          new UsageError(
            `standard input: no password line in ${timeoutMs / 1000} s (or give --password-file)`,
          ),
        ),
      timeoutMs,
    );
    input.on('data', onData);
    input.once('end', onEnd);
    input.once('error', onError);
    input.resume();
  });
}

/**
 * Prompts on `output` and reads one line from the terminal with echo off: raw mode, so the terminal
 * neither shows what is typed nor turns Ctrl-C into a signal — the reader handles both, and puts the
 * mode back as it found it before it settles, whichever way it ends.
 */
function promptHidden(
  input: SecretInput,
  output: NodeJS.WritableStream,
  prompt: string,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const wasRaw = input.isRaw === true;
    let line = '';
    const done = (err: Error | null): void => {
      clearTimeout(timer);
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onError);
      input.setRawMode!(wasRaw);
      input.pause();
      output.write('\n');
      if (err) reject(err);
      else resolve(line);
    };
    const onData = (c: Buffer | string): void => {
      const text = typeof c === 'string' ? c : c.toString('utf8');
      // A key that sends an escape sequence (an arrow, a function key) is not part of a password.
      if (text.startsWith('\u001b')) return;
      for (const ch of text) {
        if (ch === '\r' || ch === '\n') {
          done(null);
          return;
        }
        if (ch === '\u0003') {
          done(new CancelledError('cancelled (Ctrl-C); nothing was sent'));
          return;
        }
        if (ch === '\u0004') {
          done(line === '' ? new CancelledError('cancelled (Ctrl-D); nothing was sent') : null);
          return;
        }
        if (ch === '\u007f' || ch === '\b') line = [...line].slice(0, -1).join('');
        else if (ch === '\u0015') line = '';
        else if (ch >= ' ') line += ch;
      }
    };
    const onEnd = (): void => done(new CancelledError('the terminal closed; nothing was sent'));
    const onError = (err: Error): void => done(new UsageError(`the terminal: ${err.message}`));
    // Echo off before the prompt shows: nothing typed after it is ever echoed.
    try {
      input.setRawMode!(true);
    } catch (err) {
      reject(new UsageError(`the terminal: cannot turn its echo off (${(err as Error).message})`));
      return;
    }
    output.write(prompt);
    const timer = setTimeout(
      () => done(new UsageError(`no password typed in ${timeoutMs / 60_000} minutes; nothing was sent`)),
      timeoutMs,
    );
    input.on('data', onData);
    input.once('end', onEnd);
    input.once('error', onError);
    input.resume();
  });
}
