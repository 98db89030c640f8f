//! Longest-prefix-match tables: DIR-24-8 for IPv4, a multibit trie for IPv6.
