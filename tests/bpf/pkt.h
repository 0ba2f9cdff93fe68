/* SPDX-License-Identifier: Apache-2.0 */
/* Test packets for BPF_PROG_TEST_RUN, shared by the BPF tests and benchmarks. */
#ifndef AXN_TEST_PKT_H
#define AXN_TEST_PKT_H

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <string.h>

/* Packed: the IPv4 header sits at offset 14, which no aligned pointer may reach. */
struct __attribute__((packed)) pkt_tcp4 {
	struct ethhdr eth;
	struct iphdr ip;
	struct tcphdr tcp;
};

/* A 54-byte TCP SYN 10.0.0.1:40000 -> 10.0.0.2:80. */
static inline void pkt_tcp4_syn(struct pkt_tcp4 *p)
{
	memset(p, 0, sizeof(*p));
	memcpy(p->eth.h_dest, "\x02\x00\x00\x00\x00\x02", ETH_ALEN);
	memcpy(p->eth.h_source, "\x02\x00\x00\x00\x00\x01", ETH_ALEN);
	p->eth.h_proto = htons(ETH_P_IP);
	p->ip.version = 4;
	p->ip.ihl = 5;
	p->ip.ttl = 64;
	p->ip.protocol = IPPROTO_TCP;
	p->ip.tot_len = htons(sizeof(p->ip) + sizeof(p->tcp));
	p->ip.saddr = htonl(0x0a000001);
	p->ip.daddr = htonl(0x0a000002);
	p->tcp.source = htons(40000);
	p->tcp.dest = htons(80);
	p->tcp.doff = 5;
	p->tcp.syn = 1;
}

#endif
