//! vBNG: PPPoE/IPoE subscriber termination with RADIUS AAA (issue 8).
