package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// DecodeConfig decodes a channel's JSON configuration into v (a pointer to
// a struct with json tags) strictly, because a typo must never silently
// become a default. Empty input, malformed JSON, trailing data, an unknown
// field and a value of the wrong type are all CodeBadConfig errors whose
// message names the field and says what it wants:
//
//	config: unknown field "pth": the fields are path, poll_interval, max_payload
//	config: "max_payload" must be a number, got "big"
//	config: "poll_interval" is "soon": want a duration such as "250ms" or "1h"
//
// Checking values (required fields, ranges) is left to the adapter; name
// the field there too: sdk.Errorf(sdk.CodeBadConfig, "config: \"path\" is required").
func DecodeConfig(raw []byte, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return Errorf(CodeBadConfig, "config is empty: give a JSON object with the fields %s", fieldList(v))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			return Errorf(CodeBadConfig, "config: trailing data after the JSON object")
		}
		return nil
	}
	return Errorf(CodeBadConfig, "config: %s", explainConfig(raw, v, err))
}

// explainConfig turns a decoding error into a message naming the field.
func explainConfig(raw []byte, v any, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "not valid JSON: it ends too early"
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON at byte %d: %v", se.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ") + ": the fields are " + fieldList(v)
	case errors.As(err, &te) && te.Field == "":
		return fmt.Sprintf("want a JSON object with the fields %s, got %s", fieldList(v), te.Value)
	}
	// A wrong type or a value a field's own decoder refused (a duration):
	// find the field by decoding each one alone.
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) == nil {
		for _, f := range structFields(v) {
			val, ok := fields[f.name]
			if !ok {
				continue
			}
			one := reflect.New(f.typ)
			if ferr := json.Unmarshal(val, one.Interface()); ferr != nil {
				return fmt.Sprintf("%q %s", f.name, wantFor(f.typ, val))
			}
		}
	}
	if errors.As(err, &te) {
		return fmt.Sprintf("%q must be %s, got %s", te.Field, kindWord(te.Type), te.Value)
	}
	return err.Error()
}

// wantFor says what a field of type t wants, given the value it got.
func wantFor(t reflect.Type, got json.RawMessage) string {
	if t == reflect.TypeFor[Duration]() {
		return fmt.Sprintf("is %s: want a duration such as \"250ms\" or \"1h\"", got)
	}
	return fmt.Sprintf("must be %s, got %s", kindWord(t), got)
}

func kindWord(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	if t == reflect.TypeFor[Duration]() {
		return "a duration such as \"250ms\""
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number of at least 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return kindWord(t.Elem())
	}
	return "a " + t.String()
}

type field struct {
	name string
	typ  reflect.Type
}

// structFields lists the JSON fields of the struct v points to, in order.
func structFields(v any) []field {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var out []field
	for sf := range t.Fields() {
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			out = append(out, structFields(reflect.New(sf.Type).Interface())...) // promoted, as encoding/json does
			continue
		}
		if !sf.IsExported() {
			continue
		}
		switch {
		case name == "-":
			continue
		case name == "":
			name = sf.Name
		}
		out = append(out, field{name: name, typ: sf.Type})
	}
	return out
}

func fieldList(v any) string {
	var names []string
	for _, f := range structFields(v) {
		names = append(names, f.name)
	}
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}
