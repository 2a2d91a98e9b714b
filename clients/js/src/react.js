// @gateway-host/client/react: useVoiceChannelEvents, the React face of voiceChannel().
//
// Why a separate module: the core client has no dependencies and is served as-is at
// /client.js; only apps that use React import this one (React is a peer dependency).
import { useEffect, useState } from 'react';
import { voiceChannel } from './client.js';

const EMPTY = Object.freeze({ members: [], events: [], dropouts: [] });

/**
 * The live state of one voice channel: `{ members, events, dropouts, state }`.
 *
 * options: `source` (a connect() client or a legacySource()) or `client` (a connect()
 * client; same thing), plus voiceChannel() options (rejoinWindowMs, maxEvents, maxDropouts).
 * Subscribes in an effect; unsubscribes on unmount and whenever guildId, channelId or the
 * source change (the lists start empty again for the new channel).
 */
export function useVoiceChannelEvents(guildId, channelId, options = {}) {
  const source = options.source || options.client || null;
  const { rejoinWindowMs, maxEvents, maxDropouts } = options;
  const [snapshot, setSnapshot] = useState(EMPTY);
  const [state, setState] = useState(source ? source.state || 'open' : 'closed');

  useEffect(() => {
    if (!source || guildId == null || channelId == null) {
      setSnapshot(EMPTY);
      return undefined;
    }
    const vc = voiceChannel(source, guildId, channelId, { rejoinWindowMs, maxEvents, maxDropouts });
    setSnapshot(EMPTY);
    setState(source.state || 'open');
    const offChange = vc.on('change', (s) => setSnapshot(s));
    const offState = source.on('state', (s) => setState(s));
    return () => {
      offChange();
      if (typeof offState === 'function') offState();
      vc.close();
    };
  }, [source, guildId, channelId, rejoinWindowMs, maxEvents, maxDropouts]);

  return { members: snapshot.members, events: snapshot.events, dropouts: snapshot.dropouts, state };
}
