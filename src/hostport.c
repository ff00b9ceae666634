/*
 * hostport: split at the last colon; an IPv6 host comes in brackets.
 */
#include "hostport.h"

#include <stdio.h>
#include <string.h>

int hostport_parse(const char *address, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon = strrchr(address, ':');
	if (colon == NULL || colon == address || colon[1] == '\0')
		return -1;
	const char *h = address;
	size_t hlen = (size_t)(colon - address);
	if (h[0] == '[') {
		if (hlen < 3 || h[hlen - 1] != ']')
			return -1;
		h++;
		hlen -= 2;
	}
	if (hlen >= hostlen || strlen(colon + 1) >= portlen)
		return -1;
	for (const char *p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	snprintf(port, portlen, "%s", colon + 1);
	return 0;
}
