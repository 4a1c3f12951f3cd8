/**
 * The Cedar schema of Cordon's request model. Guardrails are validated against it (strict
 * mode) when they are loaded, so a typo in an attribute name is an error at load, never a
 * policy that silently matches nothing.
 */
export const CEDAR_SCHEMA = `namespace Cordon {
  type ManifestInfo = {
    digest: String,
    version: String,
    apiScopes: Set<String>,
  };

  entity Agent = {
    name: String,
    role: String,
    dataClassification: String,
    manifest: ManifestInfo,
  };

  entity File = {
    path: String,
  };

  entity Host = {
    host: String,
    port: Long,
    scheme: String,
    path: String,
    isIp: Bool,
    ip?: __cedar::ipaddr,
  };

  entity Command = {
    path: String,
    name: String,
    interpreter: Bool,
  };

  entity ApiScope = {
    scope: String,
    service: String,
  };

  entity Secret = {
    name: String,
  };

  type RequestContext = {
    session: String,
    approved: Bool,
    needsApproval: Bool,
    argv: Set<String>,
    method: String,
  };

  action "file.read", "file.write" appliesTo { principal: Agent, resource: File, context: RequestContext };
  action "exec" appliesTo { principal: Agent, resource: Command, context: RequestContext };
  action "net.connect", "http.request" appliesTo { principal: Agent, resource: Host, context: RequestContext };
  action "api.call" appliesTo { principal: Agent, resource: ApiScope, context: RequestContext };
  action "secret.get" appliesTo { principal: Agent, resource: Secret, context: RequestContext };
}
`;
