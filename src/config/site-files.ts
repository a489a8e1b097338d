// What a controller needs on disk and on the wire beyond a valid document: the files the site and
// the API settings name (read and judged as the daemon will read them, with the rules of
// ./config-files.ts), and endpoints it can really dial. The simulator loads the same site without
// these: it serves the units, it does not log in to them.
import type { ConfigProblem } from '../errors.ts';
import { readCaFile, readSecretFile, readSecretLine, utf8Text } from './config-files.ts';
import type { Site } from './site-schema.ts';

type Problem = Omit<ConfigProblem, 'file'>;

/**
 * Port 0 in a site file lets the simulator pick a free port; a controller would dial port 0 of the
 * unit's host. Every endpoint a controller dials must name a real port.
 */
export function siteEndpointProblems(site: Site, sitePath: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const allowed = (what: string) =>
    `the port the ${what} listens on (1–65535); port 0 only lets the simulator pick one (npm run sim -- --ephemeral-ports), whose state names the ports it took`;
  site.airHandlers.forEach((a, i) => {
    if (a.protocol === 'modbus-tcp' && a.endpoint.port === 0)
      problems.push({
        file: sitePath,
        path: `/airHandlers/${i}/endpoint/port`,
        message: `air handler "${a.id}" has port 0: the controller cannot dial it`,
        allowed: allowed('unit (or its Modbus gateway)'),
      });
    if (a.protocol === 'opcua' && opcuaPort(a.endpoint.url) === '0')
      problems.push({
        file: sitePath,
        path: `/airHandlers/${i}/endpoint/url`,
        message: `air handler "${a.id}" has port 0 in its URL: the controller cannot dial it`,
        allowed: allowed('OPC-UA server'),
      });
  });
  site.gateways.forEach((g, i) => {
    if (g.transport === 'modbus-tcp' && g.endpoint?.port === 0)
      problems.push({
        file: sitePath,
        path: `/gateways/${i}/endpoint/port`,
        message: `gateway "${g.id}" has port 0: the controller cannot poll it`,
        allowed: allowed('sensor gateway'),
      });
  });
  return problems;
}

function opcuaPort(url: string): string | undefined {
  try {
    return new URL(url).port;
  } catch {
    return undefined;
  }
}

/**
 * Every file the site names that the controller reads, read now as the daemon will: each OPC-UA
 * unit's `endpoint.passwordFile` and the webhook's `headerFile` and `caFile` (paths already resolved
 * against the site file, load-site.ts). A secret that is missing, unreadable, open to other users,
 * empty or more than one line, and a CA file that is missing or holds no certificate, is a problem at
 * its path, so that `config validate` and the daemon's start refuse it alike, and the daemon never
 * runs a unit without its password or a webhook without its header or its CA.
 */
export async function siteFileProblems(site: Site, sitePath: string): Promise<ConfigProblem[]> {
  const problems: ConfigProblem[] = [];
  const check = async (path: string, full: string) => {
    const r = await readSecretLine(full);
    if (!r.ok) problems.push({ file: sitePath, path, message: r.message, allowed: r.allowed });
  };
  for (const [i, a] of site.airHandlers.entries())
    if (a.protocol === 'opcua' && a.endpoint.passwordFile !== undefined)
      await check(`/airHandlers/${i}/endpoint/passwordFile`, a.endpoint.passwordFile);
  const headerFile = site.alarms?.notifications?.webhook?.headerFile;
  if (headerFile !== undefined) await check('/alarms/notifications/webhook/headerFile', headerFile);
  const webhook = site.alarms?.notifications?.webhook;
  if (webhook?.caFile !== undefined) {
    const path = '/alarms/notifications/webhook/caFile';
    const r = await readCaFile(webhook.caFile);
    if (!r.ok) problems.push({ file: sitePath, path, message: r.message, allowed: r.allowed });
    else if (!webhook.url.startsWith('https://'))
      problems.push({
        file: sitePath,
        path,
        message: `a CA for a receiver at ${new URL(webhook.url).origin}, which is not https://: it would never be used`,
        allowed: 'an https:// url with the CA, or no caFile',
      });
  }
  return problems;
}

/**
 * `api.bootstrapAdminFile` (YAML `name:` and `password:`), judged as the API will take it: kept from
 * other users, YAML, a valid name and a long enough password. A parse error is told by its line and
 * column only: the parser's message can quote the line, and the line can hold the password.
 * A missing file is only a warning unless `required`: the file is read only while the cluster has
 * no user, and the docs say to delete it once the first admin has signed in.
 */
export async function bootstrapAdminCheck(
  full: string,
  opts: { required: boolean },
): Promise<{ problems: Problem[]; warnings: Problem[]; admin?: { name: string; password: string } }> {
  const path = '/api/bootstrapAdminFile';
  const problem = (message: string, allowed: string) => ({
    problems: [{ path, message, allowed }],
    warnings: [],
  });
  const bytes = await readSecretFile(full);
  if (!bytes.ok) {
    if (bytes.code === 'ENOENT' && !opts.required)
      return {
        problems: [],
        warnings: [
          {
            path,
            message: `${full} does not exist: fine once the cluster has its first admin; a node that finds no user in the cluster refuses to start without it`,
            allowed:
              'the file (name: and password:, mode 600) for the first start, or no api.bootstrapAdminFile',
          },
        ],
      };
    return problem(bytes.message, bytes.allowed);
  }
  const text = utf8Text(bytes.value, full);
  if (!text.ok) return problem(text.message, text.allowed);
  let doc: unknown;
  try {
    const { CORE_SCHEMA, load } = await import('js-yaml');
    doc = load(text.value, { schema: CORE_SCHEMA });
  } catch (err) {
    const mark = (err as { mark?: { line: number; column: number } }).mark;
    return problem(
      `${full} is not valid YAML${mark ? ` (line ${mark.line + 1}, column ${mark.column + 1})` : ''}`,
      'name: NAME and password: "…" on two lines (quote the password)',
    );
  }
  const { name, password } = (doc ?? {}) as { name?: unknown; password?: unknown };
  if (typeof name !== 'string' || typeof password !== 'string')
    return problem(
      `${full} needs "name" and "password", both text`,
      'name: NAME and password: "…" on two lines',
    );
  const { userProblems } = await import('./user-rules.ts');
  const bad = userProblems(name, password);
  if (bad.length > 0)
    return problem(
      `${full}: the first admin's ${bad.map((b) => b.split(':')[0]).join(' and ')} would be refused`,
      bad.join('; '),
    );
  return { problems: [], warnings: [], admin: { name, password } };
}
