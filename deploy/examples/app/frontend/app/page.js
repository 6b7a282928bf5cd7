"use client";
// A stand-in for your trading screen: the Kite session, the live feed and its prices, polled
// from the backend twice a second (through app/api/[...path]/route.js).
import { useEffect, useState } from "react";

const POLL_MS = 500;

async function getJson(path) {
  try {
    const res = await fetch(path, { cache: "no-store" });
    return await res.json();
  } catch {
    return null;
  }
}

function authText(health) {
  if (!health) return "Backend down";
  if (health.auth === "VALID") return "Kite session valid";
  if (health.auth === "EXPIRED") return "Kite token expired";
  return `Kite session ${health.auth || "unknown"}`;
}

export default function Page() {
  const [health, setHealth] = useState(null);
  const [feed, setFeed] = useState(null);

  useEffect(() => {
    let stopped = false;
    async function poll() {
      const [h, f] = await Promise.all([getJson("/api/system/health"), getJson("/api/feed")]);
      if (stopped) return;
      setHealth(h);
      setFeed(f);
      setTimeout(poll, POLL_MS);
    }
    poll();
    return () => {
      stopped = true;
    };
  }, []);

  const connected = feed && feed.feed === "connected";
  const prices = (feed && feed.prices) || [];
  return (
    <main>
      <h1>Trading desk</h1>
      <p>
        Broker: <strong id="auth">{authText(health)}</strong>
      </p>
      <p>
        <strong id="feed" style={{ color: connected ? "green" : "crimson" }}>
          {feed ? (connected ? "Feed connected" : "Feed disconnected") : "Feed unknown"}
        </strong>
      </p>
      <p>
        Outages: <span id="outages">{feed ? feed.outages : 0}</span>
        {feed && feed.last_outage_seconds != null ? `, the last ${feed.last_outage_seconds} s` : ""}
      </p>
      <table id="prices">
        <thead>
          <tr>
            <th align="left">Instrument</th>
            <th align="right">Last price</th>
            <th align="right">Change %</th>
            <th align="right">Ticks</th>
          </tr>
        </thead>
        <tbody>
          {prices.map((p) => (
            <tr key={p.instrument_token} data-token={p.instrument_token}>
              <td>{p.symbol}</td>
              <td align="right" className="last-price">
                {p.last_price.toFixed(2)}
              </td>
              <td align="right">{p.change.toFixed(2)}</td>
              <td align="right" className="ticks">
                {p.ticks}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}
