package pubsublock

import "strings"

// slotCount is the number of hash slots of a Redis Cluster.
const slotCount = 16384

// crc16Table is the table of CRC-16/XMODEM (polynomial 0x1021, initial
// value 0, no reflection), the checksum Redis Cluster hashes keys with.
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// crc16 continues the CRC-16/XMODEM crc over s; start with 0.
func crc16(crc uint16, s string) uint16 {
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^s[i]]
	}
	return crc
}

// hashTag returns the part of key that Redis Cluster hashes: the text
// between the first '{' and the first '}' after it, if that is not empty,
// and otherwise the whole key (Redis keyHashSlot).
func hashTag(key string) (tag string, tagged bool) {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key, false
	}
	n := strings.IndexByte(key[open+1:], '}')
	if n <= 0 {
		return key, false
	}
	return key[open+1 : open+1+n], true
}

// hashSlot returns the Redis Cluster hash slot of a key or shard channel name,
// 0 to 16383, as CLUSTER KEYSLOT computes it: CRC-16/XMODEM of the key's
// hash tag (see https://redis.io/docs/reference/cluster-spec/) modulo
// 16384.
func hashSlot(key string) int {
	tag, _ := hashTag(key)
	return int(crc16(0, tag) % slotCount)
}

// sameSlot returns a name in the same hash slot as channel, made of the
// channel, suffix (which must hold no '{' or '}') and sometimes a few extra
// characters. A channel with a hash tag keeps it in front: "a{b}" gives
// "a{b}-suffix". A channel without one is wrapped in a new tag: "jobs"
// gives "{jobs}-suffix". That does not work when the channel holds a '}'
// but no tag ("a}b": "{a}b}" would hash "a"); then characters are chosen
// to end the name so that its whole-name checksum falls in the slot.
func sameSlot(channel, suffix string) string {
	if _, tagged := hashTag(channel); tagged {
		return channel + "-" + suffix
	}
	if !strings.Contains(channel, "}") {
		return "{" + channel + "}-" + suffix
	}
	// No tag, so the name is hashed whole; appending characters other than
	// braces cannot make a tag, as the first '{' is followed at once by
	// '}' or by no '}' at all.
	return forceSlot(channel+"-"+suffix+"-", hashSlot(channel))
}

// forceAlphabet is what forceSlot appends characters from.
const forceAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_."

// forceSlot appends the first (shortest, then in alphabet order) string of
// forceAlphabet characters that puts prefix, hashed whole, in slot. Three
// characters give 262144 candidates for 16384 slots; about 16384
// checksum steps are needed on average, a few tens of microseconds.
func forceSlot(prefix string, slot int) string {
	base := crc16(0, prefix)
	buf := make([]byte, 0, 8)
	var search func(crc uint16, depth int) bool
	search = func(crc uint16, depth int) bool {
		if depth == 0 {
			return int(crc%slotCount) == slot
		}
		for i := 0; i < len(forceAlphabet); i++ {
			c := forceAlphabet[i]
			buf = append(buf, c)
			if search(crc<<8^crc16Table[byte(crc>>8)^c], depth-1) {
				return true
			}
			buf = buf[:len(buf)-1]
		}
		return false
	}
	for n := 1; ; n++ {
		if search(base, n) {
			return prefix + string(buf)
		}
	}
}
