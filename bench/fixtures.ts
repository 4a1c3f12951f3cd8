import { validateManifest } from '../src/manifest/parse.js';
import type { Manifest } from '../src/manifest/schema.js';
import type { PolicyRequest } from '../src/policy/types.js';

export const HOME = '/home/bench';

/** A realistic manifest: `paths` path grants, `hosts` network scopes, `commands` commands, `scopes` API scopes. */
export function benchManifest(
  paths: number,
  hosts: number,
  commands: number,
  scopes: number,
): Manifest {
  const readPaths: string[] = [];
  const writePaths: string[] = [];
  for (let i = 0; i < paths; i++) {
    const p =
      i % 3 === 0
        ? `~/Work/project-${i}/**`
        : i % 3 === 1
          ? `/srv/data/team-${i}/**`
          : `~/Documents/reports-${i}`;
    (i % 5 === 0 ? writePaths : readPaths).push(p);
  }
  const networkScopes = Array.from({ length: hosts }, (_, i) =>
    i % 4 === 0
      ? `https://*.svc-${i}.corp.example.com`
      : `https://api-${i}.example.com${i % 3 === 0 ? '/v1' : ''}`,
  );
  const commandsAllowed = Array.from({ length: commands }, (_, i) => `/usr/local/bin/tool-${i}`);
  const apiScopes = Array.from({ length: scopes }, (_, i) =>
    i % 5 === 0 ? `mcp:server${i}:*` : `svc${i}:action${i}:q`,
  );
  const r = validateManifest({
    apiVersion: 'cordon.dev/v1',
    agentName: 'bench',
    version: '1.0.0',
    role: 'developer',
    dataClassification: 'internal',
    owner: 'bench@example.com',
    notAfter: '2099-01-01T00:00:00Z',
    readPaths,
    writePaths,
    networkScopes,
    apiScopes,
    commandsAllowed,
    requiresApproval: writePaths.length > 0 ? [`write:${writePaths[0] ?? ''}`] : [],
  });
  if (!r.ok) throw new Error(JSON.stringify(r.issues.slice(0, 3)));
  return r.manifest;
}

/** A mix of allowed, denied and asked requests of every kind against {@link benchManifest}. */
export function benchRequests(
  paths: number,
  hosts: number,
  commands: number,
  scopes: number,
): PolicyRequest[] {
  const out: PolicyRequest[] = [];
  for (let i = 0; i < 64; i++) {
    const p = i % paths;
    out.push({
      kind: 'file.read',
      path: `${HOME}/Work/project-${p - (p % 3)}/src/module-${i}/file-${i}.ts`,
    });
    out.push({ kind: 'file.read', path: `${HOME}/.ssh/id_ed25519` });
    out.push({ kind: 'file.write', path: `${HOME}/Work/project-0/out/report-${i}.txt` });
    out.push({ kind: 'file.read', path: `/srv/data/team-${p - (p % 3) + 1}/rows-${i}.csv` });
    out.push({ kind: 'file.read', path: `/etc/passwd` });
    out.push({ kind: 'exec', path: `/usr/local/bin/tool-${i % commands}` });
    out.push({ kind: 'exec', path: `/usr/bin/python3` });
    out.push({
      kind: 'http.request',
      method: 'GET',
      url: `https://api-${(i % hosts) | 1}.example.com/items/${i}`,
    });
    out.push({ kind: 'net.connect', host: `a.svc-0.corp.example.com`, port: 443, scheme: 'https' });
    out.push({ kind: 'http.request', method: 'POST', url: `https://evil-${i}.example.net/upload` });
    out.push({ kind: 'api.call', scope: `svc${(i % scopes) | 1}:action${(i % scopes) | 1}:q` });
    out.push({ kind: 'api.call', scope: `mcp:server0:tool${i}` });
    out.push({ kind: 'secret.get', name: 'NOPE' });
  }
  return out;
}
