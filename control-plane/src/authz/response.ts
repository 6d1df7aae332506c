// Decision -> envoy.service.auth.v3.CheckResponse. (google.protobuf.Value keeps
// protobufjs's camelCase field names: it comes from protobufjs's bundled descriptor.)
import { AUTHZ_METADATA_CONSUMER } from '../model/contract.ts';
import type { CheckResponse } from '../proto/codec.ts';
import type { Decision, Identity } from './decide.ts';
import { failureBody, wwwAuthenticate, type AuthFailure } from './failure.ts';

/** google.rpc.Code values Envoy reads from CheckResponse.status. */
const RPC_CODE = { ok: 0, invalidArgument: 3, permissionDenied: 7, unauthenticated: 16 } as const;

type HeaderOption = NonNullable<NonNullable<CheckResponse['ok_response']>['headers']>[number];

function overwrite(name: string, value: string): HeaderOption {
  return { header: { key: name, value }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' };
}

/** Dynamic metadata for later filters (rate-limit descriptors read the consumer). */
export function identityMetadata(identity: Identity): NonNullable<CheckResponse['dynamic_metadata']> {
  const fields: Record<string, { stringValue: string }> = { auth_mode: { stringValue: identity.mode } };
  if (identity.consumer !== undefined) fields[AUTHZ_METADATA_CONSUMER] = { stringValue: identity.consumer };
  if (identity.credential !== undefined) fields.credential = { stringValue: identity.credential };
  return { fields };
}

export function checkResponse(decision: Decision): CheckResponse {
  if (!decision.allow) return deniedResponse(decision.failure);
  return {
    status: { code: RPC_CODE.ok },
    ok_response: {
      headers: decision.setHeaders.map(([name, value]) => overwrite(name, value)),
      headers_to_remove: decision.removeHeaders,
      // Envoy rewrites :path without these before the request goes upstream.
      query_parameters_to_remove: decision.removeQuery.length > 0 ? decision.removeQuery : undefined,
    },
    dynamic_metadata: identityMetadata(decision.identity),
  };
}

export function deniedResponse(failure: AuthFailure): CheckResponse {
  const code = failure.status === 403 ? RPC_CODE.permissionDenied : failure.status === 400 ? RPC_CODE.invalidArgument : RPC_CODE.unauthenticated;
  return {
    status: { code, message: failure.reason },
    denied_response: {
      status: { code: failure.status },
      headers: [overwrite('www-authenticate', wwwAuthenticate(failure)), overwrite('content-type', 'application/json'), overwrite('cache-control', 'no-store')],
      body: failureBody(failure),
    },
  };
}
