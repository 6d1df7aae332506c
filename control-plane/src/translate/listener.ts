// The one HTTP listener: http_connection_manager with RDS over ADS and the filter chain.
import type { Listener } from '../proto/codec.ts';
import type { HttpFilter } from './filters.ts';
import { HCM_FILTER, listenerName, routeConfigName } from './names.ts';
import { adsConfigSource, bool, socketAddress, typed } from './util.ts';

export function httpListener(address: string, port: number, httpFilters: HttpFilter[]): Listener {
  return {
    name: listenerName(port),
    address: socketAddress(address, port),
    filter_chains: [
      {
        filters: [
          {
            name: HCM_FILTER,
            typed_config: typed('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
              stat_prefix: listenerName(port),
              codec_type: 'AUTO',
              rds: { route_config_name: routeConfigName(port), config_source: adsConfigSource() },
              http_filters: httpFilters,
              // Sluice is the edge: the client address is the peer, not X-Forwarded-For.
              use_remote_address: bool(true),
              // Match and authorize the path the upstream will see (/a/../b is /b).
              normalize_path: bool(true),
              merge_slashes: true,
            }),
          },
        ],
      },
    ],
  };
}
