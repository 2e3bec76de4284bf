# frozen_string_literal: true

require "json"

module BerryMQ
  # JSON-RPC 2.0 as docs/protocol.md describes it: codes, request texts, replies.
  module JSONRPC
    CODES = {
      parse_error: -32_700, invalid_request: -32_600, method_not_found: -32_601,
      invalid_params: -32_602, internal_error: -32_603, unknown_token: -32_001,
      empty: -32_002, too_large: -32_003, unauthorised: -32_004, queue_full: -32_005,
      no_queue: -32_006, not_available: -32_007, malformed_token: -32_008
    }.freeze

    MESSAGES = {
      -32_700 => "Parse error", -32_600 => "Invalid Request", -32_601 => "Method not found",
      -32_602 => "Invalid params", -32_603 => "Internal error",
      -32_001 => "Unknown or expired token", -32_005 => "Queue is full"
    }.freeze

    # The largest request a node accepts by default (its max_size setting), in bytes.
    MAX_SIZE = 1_048_576

    module_function

    # Compact JSON text; NaN and Infinity are refused (they are not JSON).
    def dump(value)
      JSON.generate(value)
    rescue JSON::GeneratorError => e
      raise ArgumentError, "cannot be sent as JSON: #{e.message}"
    end

    # The text of a request, refused with MessageTooLarge over +max_size+ bytes.
    def request_text(value, max_size = MAX_SIZE)
      text = dump(value)
      if text.bytesize > max_size
        raise MessageTooLarge, "a #{value['method']} request of #{text.bytesize} bytes is over the " \
                               "limit of #{max_size} bytes; it was not sent"
      end
      text
    end

    # The result of +reply+ (a parsed response), or the node's error raised as RemoteError.
    # Accepts 1.0-style replies too (both members, one of them null).
    def result_of(reply, where)
      unless reply.is_a?(Hash) && (reply.key?("result") || reply.key?("error"))
        raise TransportError, "#{where} sent a malformed JSON-RPC reply: #{reply.inspect[0, 200]}"
      end

      error = reply["error"]
      return reply["result"] if error.nil?

      if error.is_a?(Hash)
        raise RemoteError.new(error["code"], error["message"].to_s, error["data"])
      end

      raise RemoteError.new(nil, error.to_s)
    end

    # Whether a parsed value is a response (result or error, no method) rather than a request.
    def response?(value)
      value.is_a?(Hash) && !value.key?("method") && (value.key?("result") || value.key?("error"))
    end

    # An error response for request +id+ (1.0 form when +v1+: both members present).
    def error_response(code, id, data = nil, v1: false)
      error = { "code" => code, "message" => MESSAGES.fetch(code, "Error") }
      error["data"] = data unless data.nil?
      v1 ? { "result" => nil, "error" => error, "id" => id } : { "jsonrpc" => "2.0", "error" => error, "id" => id }
    end

    def result_response(result, id, v1: false)
      v1 ? { "result" => result, "error" => nil, "id" => id } : { "jsonrpc" => "2.0", "result" => result, "id" => id }
    end

    # The answer to a parsed request text (a request or a batch) by +handler+ (which
    # answers one request Hash with a response Hash or nil), or nil when there is none.
    def answer(value, handler)
      return handler.call(value) unless value.is_a?(Array)
      return error_response(CODES[:invalid_request], nil) if value.empty?

      answers = value.map { |member| handler.call(member) }.compact
      answers.empty? ? nil : answers
    end
  end

  # Waits for one value handed over by another thread (a reply, a flush marker).
  class Waiter
    def initialize
      @lock = Mutex.new
      @cond = ConditionVariable.new
      @done = false
      @value = nil
    end

    def set(value = true)
      @lock.synchronize do
        @value = value
        @done = true
        @cond.broadcast
      end
    end

    # The value, or +on_timeout+ when none came within +timeout+ seconds (nil: no limit).
    def wait(timeout = nil, on_timeout = nil)
      deadline = timeout && (BerryMQ.monotonic + timeout)
      @lock.synchronize { BerryMQ.wait_for(@cond, @lock, deadline) { @done } ? @value : on_timeout }
    end
  end
end
