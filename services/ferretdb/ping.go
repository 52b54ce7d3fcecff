package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"time"
)

// opMsg is the MongoDB wire protocol's OP_MSG opcode.
const opMsg = 2013

// pingServer sends {ping: 1, $db: "admin"} as an OP_MSG to addr and returns nil when the reply's
// document says ok: 1. It needs no driver, so the image's health check is this binary itself.
func pingServer(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err = conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err = conn.Write(pingMessage()); err != nil {
		return err
	}
	var header [16]byte
	if _, err = io.ReadFull(conn, header[:]); err != nil {
		return err
	}
	size := int(binary.LittleEndian.Uint32(header[0:4]))
	if size < 16+5+5 || size > 16<<20 || binary.LittleEndian.Uint32(header[12:16]) != opMsg {
		return fmt.Errorf("unexpected reply header % x", header)
	}
	body := make([]byte, size-16)
	if _, err = io.ReadFull(conn, body); err != nil {
		return err
	}
	if body[4] != 0 { // flagBits (4 bytes), then a kind-0 section: one BSON document
		return errors.New("reply has no body section")
	}
	ok, err := okField(body[5:])
	if err != nil {
		return err
	}
	if ok != 1 {
		return fmt.Errorf("reply ok=%v", ok)
	}
	return nil
}

// pingMessage is the OP_MSG request: header, flagBits 0, section 0 with the ping document.
func pingMessage() []byte {
	var doc bytes.Buffer
	doc.WriteByte(0x10) // int32 "ping": 1
	doc.WriteString("ping\x00")
	_ = binary.Write(&doc, binary.LittleEndian, int32(1))
	doc.WriteByte(0x02) // string "$db": "admin"
	doc.WriteString("$db\x00")
	_ = binary.Write(&doc, binary.LittleEndian, int32(len("admin")+1))
	doc.WriteString("admin\x00")
	doc.WriteByte(0x00)

	var msg bytes.Buffer
	total := 16 + 4 + 1 + 4 + doc.Len()
	for _, v := range []int32{int32(total), 1, 0, opMsg, 0} {
		_ = binary.Write(&msg, binary.LittleEndian, v)
	}
	msg.WriteByte(0) // section kind 0
	_ = binary.Write(&msg, binary.LittleEndian, int32(4+doc.Len()))
	msg.Write(doc.Bytes())
	return msg.Bytes()
}

// okField reads the top-level "ok" field (double, int32 or int64) of a BSON document.
func okField(doc []byte) (float64, error) {
	if len(doc) < 5 {
		return 0, errors.New("short reply document")
	}
	end := int(binary.LittleEndian.Uint32(doc[0:4]))
	if end > len(doc) {
		return 0, errors.New("truncated reply document")
	}
	for i := 4; i < end-1; {
		kind := doc[i]
		nameEnd := bytes.IndexByte(doc[i+1:end], 0)
		if nameEnd < 0 {
			return 0, errors.New("bad field name in reply")
		}
		name := string(doc[i+1 : i+1+nameEnd])
		v := i + 2 + nameEnd
		size, err := valueSize(kind, doc[v:end])
		if err != nil {
			return 0, fmt.Errorf("field %q: %w", name, err)
		}
		if name == "ok" {
			switch kind {
			case 0x01:
				return math.Float64frombits(binary.LittleEndian.Uint64(doc[v:])), nil
			case 0x10:
				return float64(int32(binary.LittleEndian.Uint32(doc[v:]))), nil
			case 0x12:
				return float64(int64(binary.LittleEndian.Uint64(doc[v:]))), nil
			}
			return 0, fmt.Errorf("ok has BSON type 0x%02x", kind)
		}
		i = v + size
	}
	return 0, errors.New("reply has no ok field")
}

// valueSize is the encoded size of one BSON value of the given type.
func valueSize(kind byte, rest []byte) (int, error) {
	fixed := map[byte]int{0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16}
	if n, ok := fixed[kind]; ok {
		return n, nil
	}
	if len(rest) < 4 {
		return 0, errors.New("truncated value")
	}
	n := int(binary.LittleEndian.Uint32(rest[0:4]))
	switch kind {
	case 0x02: // string: length, bytes (NUL included)
		return 4 + n, nil
	case 0x03, 0x04: // document, array: the length includes itself
		return n, nil
	case 0x05: // binary: length, subtype, bytes
		return 4 + 1 + n, nil
	}
	return 0, fmt.Errorf("BSON type 0x%02x not handled", kind)
}
