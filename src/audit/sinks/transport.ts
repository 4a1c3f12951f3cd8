import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { readFileCapped } from '../../store/files.js';

export interface TlsFiles {
  readonly caFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

function tlsOptions(t: TlsFiles): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  return {
    ...(t.caFile === undefined ? {} : { ca: readFileCapped(t.caFile, 1024 * 1024) }),
    ...(t.certFile === undefined ? {} : { cert: readFileCapped(t.certFile, 1024 * 1024) }),
    ...(t.keyFile === undefined ? {} : { key: readFileCapped(t.keyFile, 1024 * 1024) }),
  };
}

/**
 * POST a body and resolve with the response status and (bounded) body. Certificates are always
 * checked; a configured CA replaces the system ones.
 */
export function post(
  url: string,
  body: string,
  headers: Record<string, string>,
  tls: TlsFiles,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(
      u,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        timeout: timeoutMs,
        ...(u.protocol === 'https:' ? tlsOptions(tls) : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size < 64 * 1024) chunks.push(c);
          size += c.length;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${u.host} in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Send octet-counted frames over one TLS connection and count them delivered only when the
 * receiver has read to the end: we half-close, and the receiver closes its side after reading
 * everything. RFC 5425 has no acknowledgement, so this is the strongest signal syslog gives.
 */
export function sendTls(
  host: string,
  port: number,
  serverName: string | undefined,
  tls: TlsFiles,
  payload: Buffer,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (e?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (e === undefined) resolve();
      else reject(e);
    };
    const socket = tlsConnect({
      host,
      port,
      servername: serverName ?? host,
      ...tlsOptions(tls),
    });
    const timer = setTimeout(() => {
      socket.destroy();
      done(new Error(`syslog receiver ${host}:${port} did not finish reading in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('secureConnect', () => {
      socket.end(payload);
    });
    socket.on('data', () => undefined);
    socket.on('error', (e: Error) => done(e));
    socket.on('close', (hadError) => {
      if (hadError) done(new Error(`syslog connection to ${host}:${port} failed`));
      else if (!socket.readableEnded)
        done(new Error(`syslog receiver ${host}:${port} closed without reading to the end`));
      else done();
    });
  });
}
