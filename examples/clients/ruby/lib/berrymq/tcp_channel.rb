# frozen_string_literal: true

require "socket"

module BerryMQ
  # JSON-RPC over one TCP connection, one JSON text per line in both directions.
  #
  # A reader thread matches responses to requests by id; requests the node sends on the
  # same connection (after interconnect) are answered, in order, by a worker thread, so a
  # receiver may itself call the node without blocking the reader.
  class TcpChannel
    MAX_LINE = 1_048_576 * 8

    attr_reader :url

    # +handler+ answers one request Hash from the node with a response Hash (or nil).
    def initialize(url, host, port, handler:, timeout:, on_close: nil)
      @url = url
      @handler = handler
      @timeout = timeout
      @on_close = on_close
      begin
        @socket = Socket.tcp(host, port, connect_timeout: timeout)
      rescue SystemCallError, SocketError, IOError => e
        raise ConnectionClosed, "cannot reach #{url}: #{e.message}"
      end
      @socket.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
      @socket.set_encoding(Encoding::UTF_8)
      @write_lock = Mutex.new
      @lock = Mutex.new
      @pending = {}
      @next_id = 0
      @closed = false
      @closing = false
      @failure = nil
      @inbox = Thread::Queue.new
      @worker = Thread.new { work }
      @reader = Thread.new { read }
    end

    def closed?
      @closed
    end

    # Over TCP the node calls back on this connection: interconnect's addr is null.
    def callback_url
      nil
    end

    # Calls +method+ and returns its result; raises RemoteError for the node's error,
    # TransportError when no answer came within +timeout+ seconds, ConnectionClosed when
    # the connection is gone.
    def call(method, params, timeout = @timeout)
      waiter = Waiter.new
      id = @lock.synchronize { @next_id += 1 }
      text = JSONRPC.request_text({ "jsonrpc" => "2.0", "method" => method, "params" => params, "id" => id })
      @lock.synchronize do
        raise ConnectionClosed, "the connection to #{@url} is closed#{@failure && " (#{@failure})"}" if @closed

        @pending[id] = waiter
      end
      write_text(text)
      reply = waiter.wait(timeout, :timeout)
      if reply == :timeout
        @lock.synchronize { @pending.delete(id) }
        raise TransportError, "#{@url} did not answer #{method} within #{timeout} s"
      end
      raise reply if reply.is_a?(Exception)

      JSONRPC.result_of(reply, @url)
    end

    def close
      @closing = true
      fail_all(ConnectionClosed.new("the connection to #{@url} was closed"))
      @socket.close unless @socket.closed?
      @inbox.close
      [@reader, @worker].each { |t| t.join(2) unless t == Thread.current }
    rescue IOError
      nil
    end

    private

    def write(value)
      write_text(JSONRPC.dump(value))
    end

    def write_text(text)
      @write_lock.synchronize { @socket.write("#{text}\n") }
    rescue IOError, SystemCallError => e
      fail_all(ConnectionClosed.new("the connection to #{@url} failed: #{e.message}"))
      raise ConnectionClosed, "the connection to #{@url} failed: #{e.message}"
    end

    def read
      while (line = @socket.gets("\n", MAX_LINE))
        next if line.strip.empty?

        take(line)
      end
      fail_all(ConnectionClosed.new(@failure || "#{@url} closed the connection"))
    rescue IOError, SystemCallError => e
      fail_all(ConnectionClosed.new("the connection to #{@url} failed: #{e.message}"))
    end

    def take(line)
      value = JSON.parse(line)
    rescue JSON::ParserError
      write(JSONRPC.error_response(JSONRPC::CODES[:parse_error], nil))
    else
      if JSONRPC.response?(value)
        respond(value)
      elsif value.is_a?(Array) && !value.empty? && value.all? { |v| JSONRPC.response?(v) }
        value.each { |v| respond(v) }
      else
        @inbox << value
      end
    end

    def respond(reply)
      waiter = @lock.synchronize { @pending.delete(reply["id"]) }
      if waiter
        waiter.set(reply)
      elsif reply["id"].nil? && reply["error"].is_a?(Hash)
        # e.g. Message too large: the node closes the connection after it
        error = reply["error"]
        @failure = "#{error['message']} (#{error['code']})"
      end
    end

    def work
      while (request = @inbox.pop)
        answer = JSONRPC.answer(request, @handler)
        write(answer) if answer
      end
    rescue ConnectionClosed
      nil
    end

    def fail_all(error)
      was_open = nil
      waiters = @lock.synchronize do
        was_open = !@closed
        @closed = true
        pending = @pending.values
        @pending.clear
        pending
      end
      waiters.each { |w| w.set(error) }
      @on_close&.call(error) if was_open && !@closing
    end
  end
end
