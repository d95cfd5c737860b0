//! Tests of the egress policy and of fetch against loopback servers.
