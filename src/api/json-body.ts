// How a JSON body is read: as UTF-8 and nothing else. Fastify's own parser decoded any body as UTF-8
// whatever charset it named, and turned each byte that is not UTF-8 into U+FFFD, so a pause reason
// sent as Latin-1 `café` was stored and audited as `caf�`: text changed in silence. A body that
// names another charset is refused (415), bytes that are not UTF-8 are refused (400), and the JSON
// itself goes to fastify's parser (prototype keys refused), whose refusal then says which it was.
// Each refusal is junk (counted and logged, never in the audit trail), as a schema's refusal is.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequestError, ErrorCodes } from '../errors.ts';
import { quoted } from './request-schema.ts';

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The charset a content type names, lower case, or null when it names none. */
function charsetOf(contentType: string | undefined): string | null {
  const m = /;\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(contentType ?? '');
  return m ? m[1]!.toLowerCase() : null;
}

/** The `application/json` parser of `app` (`addContentTypeParser(…, { parseAs: 'buffer' }, …)`). */
export function jsonBodyParser(app: FastifyInstance) {
  const parse = app.getDefaultJsonParser('error', 'error');
  return (req: FastifyRequest, body: Buffer, reply: (err: Error | null, body?: unknown) => void): void => {
    // A body that cannot be read is junk, like one its schema refuses: counted, never audited.
    const done = (err: Error | null, value?: unknown) => {
      if (err) req.junk = true;
      reply(err, value);
    };
    const charset = charsetOf(req.headers['content-type']);
    if (charset !== null && charset !== 'utf-8' && charset !== 'utf8') {
      done(
        new BadRequestError(
          ErrorCodes.BAD_REQUEST,
          `send the body as UTF-8 JSON (got charset "${quoted(charset, 40)}")`,
          ['content-type: application/json, with no charset or charset=utf-8'],
          415,
        ),
      );
      return;
    }
    let text: string;
    try {
      // A leading BOM is dropped, as JSON parsers may (RFC 8259 §8.1).
      text = UTF8.decode(body);
    } catch {
      done(
        new BadRequestError(ErrorCodes.BAD_REQUEST, 'the body is not UTF-8', [
          'body: a byte sequence that is not UTF-8 (send the text as UTF-8)',
        ]),
      );
      return;
    }
    parse(req, text, (err, value) => {
      if (!err) return done(null, value);
      const problem =
        text.length === 0
          ? 'body: empty (send {} or no content-type)'
          : prototypeKey(text)
            ? 'body: the keys "__proto__" and "constructor.prototype" are refused'
            : 'body: not valid JSON';
      done(new BadRequestError(ErrorCodes.BAD_REQUEST, `the body cannot be read: ${problem}`, [problem]));
    });
  };
}

/**
 * Whether `text` is valid JSON that fastify's parser refused: only a prototype key makes it do so.
 * JSON.parse makes `__proto__` an own property, so this reading pollutes nothing.
 */
function prototypeKey(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
